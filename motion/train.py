"""Stage 2: GAN training of the generator (paper §3.3, eq. 11–16; ``msync train generator``).

:func:`train_step` ``(state, frozen, batch) -> (state, metrics)`` does one alternating
update on a batch ``{"keypoints": [B, O+b+n, 10, 6], "audio_features": [B, 4(O+b+n+L), F]}``
(the first O = obs_len frames are observed, the next n generated and scored; the audio runs
L ≥ 0 frames past the last generated one — the FPN's look-ahead,
``GeneratorConfig.lookahead``; b = ``train.burn_in_frames``, 0 in the paper, frames G first
rolls out on its own without gradient, so that the scored frames start from G's own state):

1. G rolls out n frames once (``motion.rollout``), keeping its VJP;
2. D_f and D_s take a hinge step (eq. 11–12) on real frames/windows vs the generated ones;
3. G's loss (eq. 16: λav·L_AV^MS + λadv·(L_Gf + L_Gs) + λrec·L_rec) is taken against the
   *updated* discriminators, differentiated w.r.t. the generated frames and pulled back through
   the stored rollout VJP — one rollout forward and one backward per step, not two.

Adam with β1 = 0, β2 = 0.999; learning rates (2e-5 for G, 1e-5 for D by default) step-decay
×``decay_factor`` once ``state.step`` reaches ``decay_step`` (:func:`schedules`): the schedule
reads the state's step, so a restored state continues on the same schedule. ``frozen`` holds the
syncers' parameters ``{level: variables}``, passed separately (never differentiated nor
checkpointed with the state); ``score_fn(frozen, level, audio [N,20,F], motion [N,5,60]) -> [N]``
is static (:func:`syncer_score_fn` builds it from a syncer run).

:func:`train` is the loop around the step: batches are a pure function of ``(seed, step)``
(``syncers.data.windows.WindowLoader``: windows of O + n + L frames, the augmentations of
docs/design.md, "Generator losses and training"; the keypoints are cut to O + n), an orbax
``CheckpointManager`` under ``RUN/checkpoints`` saves the whole :class:`TrainState` every
``train.checkpoint_every`` steps and at the end (atomically), and rerunning the same command resumes
from the last checkpoint and ends bit-identical to an uninterrupted run. A run directory holds
``config.yaml`` (resolved), ``run.json`` (data root, keypoint space, feature config, the syncer run,
sizes, the fixed validation batch's ground-truth AV scores), ``metrics.jsonl`` (every
``train.log_every`` steps: every loss term, ``lr_g``, ``lr_d``, ``steps_per_s``; every
``train.validate_every`` steps also ``val_av_<i>``, the mean S^i of sequences generated on a fixed
validation batch, and ``val_l_rec``; rows past the restored step are dropped on resume) and
``model/`` (``motion.saved_model``, exported at every checkpoint, so ``load_model(RUN)`` works while
training runs).

Data parallel over every device of every process (``syncers.run.parallel``): the step is jitted with
the batch split over a ``data`` mesh axis and everything else replicated; each process draws the
whole (cheap) batch and hands only its rows to the global array, so any device count sees the
same global batch. ``--distributed`` starts ``jax.distributed`` first; every process takes part
in each (collective) orbax save, and only process 0 writes ``config.yaml``, ``run.json``,
``metrics.jsonl`` and ``model/``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

import configs
from motion import losses
from motion.config import GeneratorRunConfig, OptimConfig
from motion.discriminators import FrameDiscriminator, SequenceDiscriminator
from motion.generator import count_params, init_params
from motion.model import GeneratorModel
from motion.rollout import rollout
from motion.saved_model import (
    LONG_HORIZON,
    META,
    PARAMS,
    corpus_feature_stats,
    exported_step,
    load_model,
    save_model,
)
from syncers import train as syncer_train
from syncers.data.dataset import load_split, read_manifest
from syncers.data.features import feature_mismatch
from syncers.data.layout import FEATURES_PER_FRAME
from syncers.data.windows import WindowLoader
from syncers.models import Syncer
from syncers.models import score_fn as pair_score
from syncers.run import config as config_lib
from syncers.run import loop, parallel, progress
from syncers.run.errors import InputError
from syncers.run.rundir import (
    RUN_FILES,
    checkpoint_manager,
    locked,
    read_json,
    remove_leftovers,
    truncate_metrics,
    write_json,
)

DEFAULT_CONFIG = configs.path("generator.yaml")
# Keys that may differ between a run and its resumption (none changes a step's arithmetic).
_RESUMABLE_CHANGES = ("train.steps", "train.checkpoint_every", "train.log_every",
                      "train.validate_every", "train.max_to_keep")


# --------------------------------------------------------------------------- state and step

@flax.struct.dataclass
class TrainState:
    step: jax.Array
    g_params: Any
    d_params: Any          # {"frame": ..., "seq": ...}
    d_stats: Any           # spectral-norm power-iteration vectors ("batch_stats")
    g_opt: Any
    d_opt: Any


def schedules(optim: OptimConfig) -> tuple[Callable, Callable]:
    """``(lr_g(step), lr_d(step))``: constant, ×``decay_factor`` from ``decay_step`` on."""
    def make(lr):
        return optax.piecewise_constant_schedule(lr, {optim.decay_step: optim.decay_factor})
    return make(optim.lr_g), make(optim.lr_d)


def optimizer(optim: OptimConfig):
    """Adam's moment estimates (β1, β2), the same transform for G and D; the step is scaled by
    :func:`schedules`."""
    return optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps)


def create_train_state(config: GeneratorRunConfig, rng, n_frames: int | None = None) -> TrainState:
    """Fresh G, D_f, D_s and optimiser states (D initialised on ``n_frames`` = seq_frames)."""
    n_frames = n_frames or config.train.seq_frames
    # Four keys, as before the state stopped carrying one: the same seed, the same networks.
    k_g, k_f, k_s, _ = jax.random.split(rng, 4)
    g = init_params(config.model, k_g)
    x = jnp.zeros((1, n_frames, 10, 6))
    obs = jnp.zeros((1, config.model.obs_len, 10, 6))
    v_f = FrameDiscriminator(config.discriminators).init(k_f, x)
    v_s = SequenceDiscriminator(config.discriminators).init(k_s, obs, x)
    d = {"frame": v_f["params"], "seq": v_s["params"]}
    stats = {"frame": v_f.get("batch_stats", {}), "seq": v_s.get("batch_stats", {})}
    tx = optimizer(config.optim)
    return TrainState(jnp.int32(0), g, d, stats, tx.init(g), tx.init(d))


def _discriminate(config, d_params, d_stats, x_obs, x, update):
    """(frame scores [B, n], window scores [B, N], new stats)."""
    f = FrameDiscriminator(config.discriminators)
    s = SequenceDiscriminator(config.discriminators)
    kw = dict(update_stats=update, mutable=["batch_stats"]) if update else {}
    out_f = f.apply({"params": d_params["frame"], "batch_stats": d_stats["frame"]}, x, **kw)
    out_s = s.apply({"params": d_params["seq"], "batch_stats": d_stats["seq"]}, x_obs, x, **kw)
    if update:
        (sf, new_f), (ss, new_s) = out_f, out_s
        return sf, ss, {"frame": new_f["batch_stats"], "seq": new_s["batch_stats"]}
    return out_f, out_s, d_stats


def _apply(tx, lr, grads, opt_state, params):
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state


def train_step(state: TrainState, frozen, batch, *, config: GeneratorRunConfig,
               score_fn: Callable):
    """One D step then one G step; returns ``(state, metrics)`` (every loss term, both lrs)."""
    obs, burn = config.model.obs_len, config.train.burn_in_frames
    keypoints = batch["keypoints"]
    audio = batch["audio_features"]
    x_obs, real = keypoints[:, :obs], keypoints[:, obs + burn:]
    # D's condition: the ground truth's frames just before the scored sequence.
    x_cond = keypoints[:, burn:burn + obs]
    n = real.shape[1]
    tx = optimizer(config.optim)
    sched_g, sched_d = schedules(config.optim)
    lr_g, lr_d = sched_g(state.step), sched_d(state.step)
    cfg = config.loss
    first = obs + burn
    generated_audio = slice(FEATURES_PER_FRAME * first, FEATURES_PER_FRAME * (first + n))

    history = x_obs
    if burn:
        own = rollout(state.g_params, x_obs, audio, burn, config=config.model)
        history = jnp.concatenate([x_obs, jax.lax.stop_gradient(own)], axis=1)
    fake, pull_back = jax.vjp(
        lambda g: rollout(g, history, audio, n, config=config.model), state.g_params)

    def d_loss(d_params):
        both = jnp.concatenate([real, jax.lax.stop_gradient(fake)])
        sf, ss, stats = _discriminate(config, d_params, state.d_stats,
                                      jnp.concatenate([x_cond, x_cond]), both, True)
        b = real.shape[0]
        l_f = losses.d_hinge(sf[:b], sf[b:]) if cfg.frame_discriminator else 0.0
        l_s = losses.d_hinge(ss[:b], ss[b:]) if cfg.sequence_discriminator else 0.0
        return l_f + l_s, (l_f, l_s, stats)

    (l_d, (l_df, l_ds, stats)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
        state.d_params)
    d_params, d_opt = _apply(tx, lr_d, d_grads, state.d_opt, state.d_params)

    score = functools.partial(score_fn, frozen)

    def g_loss(fake):
        sf, ss, _ = _discriminate(config, d_params, stats, x_cond, fake, False)
        l_av, per_level = losses.av_multiscale(score, fake, audio[:, generated_audio], cfg)
        l_gf, l_gs = losses.g_hinge(sf), losses.g_hinge(ss)
        l_rec = losses.reconstruction(real, fake, cfg.head_weight)
        l_vel = losses.velocity(keypoints[:, obs + burn - 1], real, fake, history[:, -1],
                                cfg.head_weight)
        total = losses.generator_total(cfg, l_av, l_gf, l_gs, l_rec, l_vel)
        return total, {"g_total": total, "l_av": l_av, "l_gf": l_gf, "l_gs": l_gs,
                       "l_rec": l_rec, "l_vel": l_vel,
                       **{f"av_score_{k}": v for k, v in per_level.items()}}

    (_, metrics), fake_grad = jax.value_and_grad(g_loss, has_aux=True)(fake)
    (g_grads,) = pull_back(fake_grad)
    g_params, g_opt = _apply(tx, lr_g, g_grads, state.g_opt, state.g_params)

    metrics = dict(metrics, d_loss=l_d, l_df=l_df, l_ds=l_ds, lr_g=lr_g, lr_d=lr_d,
                   g_grad_norm=optax.tree.norm(g_grads),
                   d_grad_norm=optax.tree.norm(d_grads))
    return TrainState(state.step + 1, g_params, d_params, stats, g_opt, d_opt), metrics


# XLA:CPU hands whole fusions (a matmul with the elementwise work around it) to its YNNPACK
# backend by default. In the training step that makes the frozen syncers' audio encoders slow
# (depthwise-conv taps, LayerNorm and GELU recomputed inside the matmul fusions, their
# constants materialised as [N, 20, 1024] arrays); with only the matmuls given to YNNPACK, one
# at a time, a paper-size step is 6–9 % faster (in-process A/B, README "Performance").
_CPU_STEP_OPTIONS = (("xla_cpu_experimental_ynn_fusion_type",
                      "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"),)


@functools.lru_cache(maxsize=None)
def step_compiler_options(platform: str) -> tuple:
    """XLA options for the training step on ``platform`` (``jax.Device.platform``), as sorted
    ``(name, value)`` pairs: :data:`_CPU_STEP_OPTIONS` on a CPU whose XLA accepts them (a
    jaxlib without the option compiles the step with its defaults), none elsewhere."""
    if platform != "cpu":
        return ()
    try:
        jax.jit(lambda x: x @ x, compiler_options=dict(_CPU_STEP_OPTIONS)).lower(
            jnp.ones((2, 2))).compile()
    except Exception:  # noqa: BLE001 - an older or newer XLA refuses the options in its own ways
        return ()
    return _CPU_STEP_OPTIONS


def jit_train_step(config: GeneratorRunConfig, score_fn: Callable, compiler_options: tuple = (),
                   mesh=None):
    """``train_step`` jitted once for this config, syncer scorer and mesh, the state donated
    (cached: resuming or retraining in one process reuses the compiled step). The batch is
    split over ``mesh``'s ``data`` axis, everything else replicated (default mesh: every
    device, ``syncers.run.parallel``). ``compiler_options`` (sorted pairs) add to, and override,
    :func:`step_compiler_options` for the mesh's platform."""
    mesh = mesh if mesh is not None else parallel.data_mesh()
    platform = mesh.devices.flat[0].platform
    options = dict(step_compiler_options(platform)) | dict(compiler_options)
    return _jit_train_step(config, score_fn, tuple(sorted(options.items())), mesh)


@functools.lru_cache(maxsize=4)
def _jit_train_step(config, score_fn, compiler_options, mesh):
    return parallel.data_parallel_jit(
        functools.partial(train_step, config=config, score_fn=score_fn), mesh, n_args=3,
        batch_argnums=(2,), compiler_options=dict(compiler_options) or None)


@functools.lru_cache(maxsize=4)
def _jit_validate(config: GeneratorRunConfig, score_fn: Callable, levels: tuple[int, ...],
                  compiler_options: tuple = (), mesh=None):
    return parallel.data_parallel_jit(
        functools.partial(validate, config=config, score_fn=score_fn, levels=levels),
        mesh if mesh is not None else parallel.data_mesh(), n_args=3,
        batch_argnums=(), donate_argnums=(), compiler_options=dict(compiler_options) or None)


@functools.lru_cache(maxsize=4)
def _jit_create(compiler_options: tuple = ()):
    return jax.jit(create_train_state, static_argnums=(0, 2),
                   compiler_options=dict(compiler_options) or None)


def validate(g_params, frozen, batch, *, config: GeneratorRunConfig, score_fn: Callable,
             levels: tuple[int, ...]) -> dict[str, jax.Array]:
    """``{"val_av_<i>": mean S^i of generated sequences, "val_l_rec"}`` on one batch (no
    update); every level in ``levels`` whatever ``loss.multiscale_av`` says."""
    obs = config.model.obs_len
    keypoints, audio = batch["keypoints"], batch["audio_features"]
    n = keypoints.shape[1] - obs
    fake = rollout(g_params, keypoints[:, :obs], audio, n, config=config.model)
    scores = losses.av_sync(functools.partial(score_fn, frozen), fake,
                            audio[:, FEATURES_PER_FRAME * obs:FEATURES_PER_FRAME * (obs + n)],
                            levels, config.loss.pyramid_kind,
                            config.loss.pyramid_k)
    return {"val_l_rec": losses.reconstruction(keypoints[:, obs:], fake),
            **{f"val_av_{k}": v for k, v in scores.items()}}


def ground_truth_scores(frozen, batch, *, config: GeneratorRunConfig, score_fn: Callable,
                        levels: tuple[int, ...]) -> dict[str, float]:
    """The validation batch's own (real) sequences scored like :func:`validate` does."""
    obs = config.model.obs_len
    keypoints, audio = batch["keypoints"], batch["audio_features"]
    n = keypoints.shape[1] - obs
    scores = losses.av_sync(functools.partial(score_fn, frozen), jnp.asarray(keypoints[:, obs:]),
                            jnp.asarray(audio[:, FEATURES_PER_FRAME * obs:
                                              FEATURES_PER_FRAME * (obs + n)]), levels,
                            config.loss.pyramid_kind, config.loss.pyramid_k)
    return {f"gt_av_{k}": round(float(v), 6) for k, v in scores.items()}


# --------------------------------------------------------------------------- the syncers

@functools.lru_cache(maxsize=8)
def syncer_score_fn(model: Syncer, kind: str) -> Callable:
    """``score(frozen, level, audio [N,20,F], motion [N,5,60]) -> [N]`` for a syncer run:
    ``frozen[level]`` is that level's variables (their stored mean/std normalise the inputs)."""
    pair = pair_score(kind)

    def score(frozen, level, audio_Nx20xF, motion_Nx5x60):
        e_a = model.apply(frozen[level], audio_Nx20xF, method=Syncer.embed_audio)
        e_x = model.apply(frozen[level], motion_Nx5x60, method=Syncer.embed_motion)
        return pair(e_a, e_x)

    return score


def _load_syncers(path, manifest, config: GeneratorRunConfig):
    """``(TrainedSyncers, validation levels)``, checked against the data and the loss."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "no such syncer run (train one with `msync train syncers`)")
    syncers = syncer_train.load_run(path)
    space = syncers.info.get("keypoint_space")
    if manifest.keypoint_space != space:
        raise InputError(manifest.root / "manifest.json",
                         f"keypoint_space {manifest.keypoint_space!r} differs from the syncer "
                         f"run's {space!r} ({path})")
    mismatch = feature_mismatch(manifest.features, syncers.info.get("features"))
    if mismatch:
        raise InputError(manifest.root / "manifest.json",
                         f"the data's audio features differ from the syncer run's ({mismatch}; "
                         f"{path / 'run.json'})")
    data = syncers.config.data
    if data.motion != "keypoints" or data.points or syncers.model.motion_dim != 60:
        raise InputError(path / "config.yaml", "the generator needs syncers trained on all 10 "
                                               "keypoints (data.motion: keypoints, points: [])")
    if syncers.model.audio_dim != config.model.audio_features:
        raise InputError(path / "run.json", f"syncers read {syncers.model.audio_dim} audio "
                                            f"features, model.audio_features is "
                                            f"{config.model.audio_features}")
    if (data.pyramid_kind, data.pyramid_k) != (config.loss.pyramid_kind, config.loss.pyramid_k):
        raise InputError(path / "config.yaml",
                         f"syncers use a {data.pyramid_kind}/k={data.pyramid_k} pyramid, "
                         f"loss.pyramid_kind/k is "
                         f"{config.loss.pyramid_kind}/{config.loss.pyramid_k}")
    needed = tuple(range(1, config.loss.levels + 1)) if config.loss.multiscale_av else (1,)
    missing = [lv for lv in needed if lv not in syncers.levels]
    if missing:
        raise InputError(path, f"has no trained level {missing} that the loss uses "
                               f"(trained: {list(syncers.levels)})")
    val_levels = tuple(lv for lv in range(1, config.loss.levels + 1) if lv in syncers.levels)
    return syncers, val_levels


# --------------------------------------------------------------------------- the run

def train(config: GeneratorRunConfig, data_root: str | os.PathLike,
          syncers_run: str | os.PathLike, workdir: str | os.PathLike,
          stop_after: int | None = None, compiler_options: dict | None = None
          ) -> dict[str, Any]:
    """Train (or resume) the generator; returns ``run.json``'s dict.

    ``stop_after`` ends this invocation (after a checkpoint) once that many steps ran — for
    tests of resumption and for time-boxed jobs; rerunning continues where it stopped.
    ``compiler_options`` go to XLA (the tests use ``{"xla_backend_optimization_level": 0}``
    to compile in a fraction of the time).
    """
    workdir = Path(workdir)
    tc = config.train
    if min(tc.steps, tc.batch_size, tc.seq_frames, tc.checkpoint_every, tc.log_every,
           tc.validate_every, tc.val_batch_size, tc.max_to_keep) < 1:
        raise InputError("--set", "train.steps, batch sizes, seq_frames, max_to_keep and the "
                                  "*_every intervals must be >= 1")
    oc = config.optim
    if not (oc.eps > 0 and 0 <= oc.b1 < 1 and 0 <= oc.b2 < 1):
        raise InputError("--set", "Adam needs optim.eps > 0 and 0 <= optim.b1, optim.b2 < 1")
    if tc.burn_in_frames < 0:
        raise InputError("--set", f"train.burn_in_frames must be >= 0; got {tc.burn_in_frames}")
    inputs = _read_inputs(config, data_root, syncers_run)
    mesh = parallel.data_mesh()
    parallel.check_batch_size(tc.batch_size, mesh, "train.batch_size")
    primary = parallel.is_primary()
    # The whole run under RUN/.lock: a second process on this --out is refused, and checking
    # the old config then writing the new one cannot interleave with another writer.
    with locked(workdir, hold=primary):
        return _train_locked(config, inputs, syncers_run, workdir, mesh, primary, stop_after,
                             compiler_options)


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What a run reads before it touches its directory (:func:`_read_inputs`)."""
    manifest: Any
    syncers: Any                     # syncers.train.TrainedSyncers
    val_levels: tuple[int, ...]
    window: int                      # frames of a training window
    feature_stats: dict
    loader: WindowLoader
    val_split: str
    n_val_clips: int
    val_batch: dict


def _read_inputs(config: GeneratorRunConfig, data_root, syncers_run) -> _Inputs:
    tc = config.train
    manifest = read_manifest(data_root)
    syncers, val_levels = _load_syncers(syncers_run, manifest, config)
    obs, n, burn = config.model.obs_len, tc.seq_frames, tc.burn_in_frames
    window = obs + burn + n + config.model.lookahead
    train_clips = load_split(manifest.root, "train", manifest)
    # What generate matches an utterance's features onto (motion.saved_model).
    feature_stats = corpus_feature_stats([c.audio_features for c in train_clips],
                                         f"train split of {manifest.root.resolve()}")
    loader = WindowLoader(train_clips, window, tc.batch_size, tc.seed, config.data.augment)
    val_split = "val" if manifest.splits.get("val") else "train"
    val_clips = train_clips if val_split == "train" else load_split(manifest.root, "val",
                                                                     manifest)
    val_window = obs + n + config.model.lookahead                 # validation: no burn-in
    val_batch = _cut(WindowLoader(val_clips, val_window, tc.val_batch_size,
                                  tc.seed + 1).batch(0), obs + n)
    return _Inputs(manifest, syncers, val_levels, window, feature_stats, loader, val_split,
                   len(val_clips), val_batch)


def _train_locked(config: GeneratorRunConfig, inputs: _Inputs, syncers_run, workdir: Path,
                  mesh, primary: bool, stop_after: int | None,
                  compiler_options: dict | None) -> dict[str, Any]:
    """:func:`train` once the run directory is locked."""
    tc = config.train
    obs, n, burn = config.model.obs_len, tc.seq_frames, tc.burn_in_frames
    manifest, syncers, val_levels = inputs.manifest, inputs.syncers, inputs.val_levels
    loader, feature_stats = inputs.loader, inputs.feature_stats
    rows = parallel.local_rows(tc.batch_size, mesh)
    _check_resumed(config, syncers_run, workdir, manifest)
    parallel.sync("msync-generator-config-checked")     # every process read the old config
    if primary:
        # What killed writers of this run left (msync's temporary names only; the lock says
        # no writer is running): the export's staging directory, half-written files.
        remove_leftovers(*(workdir / name for name in RUN_FILES),
                         *(workdir / "model" / name for name in (PARAMS, META, LONG_HORIZON)))
        config_lib.dump(config, workdir / "config.yaml")

    score_fn = syncer_score_fn(syncers.model, syncers.info["score"])
    frozen = parallel.replicate(dict(syncers.params), mesh)
    directory = workdir / "checkpoints"
    manager = checkpoint_manager(directory, tc.max_to_keep)
    options = tuple(sorted((compiler_options or {}).items()))
    fresh = _jit_create(options)(config, jax.random.PRNGKey(tc.seed), n)
    if tc.init_from is not None:
        fresh = fresh.replace(g_params=initial_params(tc.init_from, fresh.g_params))
    # Replicated like restored checkpoints and step outputs, so both hit one compiled step.
    fresh = parallel.replicate(fresh, mesh)
    state = loop.restore(manager, fresh, directory)
    start_step = int(state.step)
    if primary:
        truncate_metrics(workdir / "metrics.jsonl", {None: start_step})

    info = read_json(workdir / "run.json")
    info.update({
        "data_root": str(manifest.root.resolve()), "keypoint_space": manifest.keypoint_space,
        "features": manifest.features, "fps": manifest.fps,
        "syncers_run": str(Path(syncers_run).resolve()), "syncer_levels": list(syncers.levels),
        "score": syncers.info["score"], "n_train_clips": len(loader.clips),
        "window_frames": inputs.window, "lookahead": config.model.lookahead,
        "val_split": inputs.val_split, "val_clips": inputs.n_val_clips,
        "params": {"generator": count_params(state.g_params),
                   "d_frame": count_params(state.d_params["frame"]),
                   "d_seq": count_params(state.d_params["seq"])},
        "val_ground_truth": ground_truth_scores(frozen, inputs.val_batch, config=config,
                                                score_fn=score_fn, levels=val_levels),
    })
    info.setdefault("seconds", 0.0)
    if primary:
        write_json(workdir / "run.json", info)

    step_fn = jit_train_step(config, score_fn, options, mesh)
    val_fn = _jit_validate(config, score_fn, val_levels, options, mesh)
    val_batch = parallel.replicate(inputs.val_batch, mesh)
    bar = progress.bar(tc.steps, "generator", "step", initial=min(start_step, tc.steps),
                       disable=not primary)
    last_val: dict[str, float] = {}

    def dispatch(state, step):
        # Every process draws the whole batch (the loader's augmentation stream is
        # sequential over rows) and hands only its own rows to the global array.
        local = jax.tree.map(lambda a: a[rows], _cut(loader.batch(step), obs + burn + n))
        return step_fn(state, frozen, parallel.global_batch(local, mesh, tc.batch_size))

    def log_row(done, values, steps_per_s):
        row = {"step": done, **{k: _round(v) for k, v in values.items()},
               "steps_per_s": round(steps_per_s, 4)}
        bar.set_postfix(loss=f"{row['g_total']:.3f}", d=f"{row['d_loss']:.3f}",
                        rec=f"{row['l_rec']:.2e}")
        return row

    def validation(done, state):
        if done % tc.validate_every and done != tc.steps:
            return None
        last_val.clear()
        last_val.update({k: _round(v) for k, v in
                         jax.device_get(val_fn(state.g_params, frozen, val_batch)).items()})
        return last_val

    try:
        result = loop.run_steps(
            state, dispatch, steps=tc.steps, log_every=tc.log_every,
            checkpoint_every=tc.checkpoint_every, budget=stop_after,
            check=lambda step, metrics: _check_finite(step, metrics, workdir), log_row=log_row,
            checkpoint=lambda state: _checkpoint(manager, state, config, info, workdir, primary,
                                                 feature_stats),
            bar=bar, metrics_path=workdir / "metrics.jsonl", primary=primary,
            extra_row=validation)
    finally:
        bar.close()
        manager.close()
    state, ran, seconds = result.state, result.ran, result.seconds
    info["seconds"] = round(info["seconds"] + seconds, 3)
    info["steps"] = int(state.step)
    if primary:
        write_json(workdir / "run.json", info)
    parallel.sync("msync-generator-run-written")    # see syncers.train: complete on exit
    finished = int(state.step) >= tc.steps
    val = ", ".join(f"S{k[7:]} {v:.3f}" for k, v in last_val.items() if k.startswith("val_av_"))
    rate = ran / seconds if seconds > 0 else 0.0
    if not primary:
        return info
    print(f"msync: generator {'done' if finished else 'stopped'} at step {int(state.step)} of "
          f"{tc.steps} ({ran} steps in {seconds:.1f} s, {rate:.2f} steps/s"
          f"{'; val ' + val if val else ''}) -> {workdir}", file=sys.stderr)
    return info


def _cut(batch: dict[str, np.ndarray], frames: int) -> dict[str, np.ndarray]:
    """The loader's window (O + n + look-ahead frames) → keypoints of the first O + n frames,
    audio features of all of them (the rollout reads the look-ahead as context)."""
    return {"keypoints": batch["keypoints"][:, :frames],
            "audio_features": batch["audio_features"]}


def _checkpoint(manager, state: TrainState, config: GeneratorRunConfig, info: dict,
                workdir: Path, primary: bool = True, feature_stats: dict | None = None) -> None:
    """Save the state (collectively: every process calls this) and export the generator, with
    the training split's ``feature_stats``, to ``RUN/model`` (process 0): after each new
    checkpoint, and whenever ``RUN/model`` is not the export of this step — missing, partial
    (a kill between its files) or older (a kill before the export; a rerun of a finished run
    repairs it)."""
    saved = loop.save(manager, state)
    if not primary or (not saved and exported_step(workdir / "model") == int(state.step)):
        return
    save_model(workdir / "model", GeneratorModel(jax.device_get(state.g_params), config.model),
               keypoint_space=info["keypoint_space"], features=info["features"],
               syncers_run=info["syncers_run"], step=int(state.step),
               data_root=info["data_root"], feature_stats=feature_stats)


def initial_params(path: str, fresh_params):
    """The parameters of the saved generator at ``path`` (``train.init_from``) as G's first;
    refused, naming it, unless their names and shapes are ``fresh_params``' (a model of other
    sizes). A checkpoint of the run, once there is one, is restored over them."""
    model, _ = load_model(path)
    if not isinstance(model, GeneratorModel):
        raise InputError(path, "train.init_from: not a msync generator (a converted release "
                               "has another architecture)")
    shapes = jax.tree.map(np.shape, model.params)
    if shapes != jax.tree.map(np.shape, fresh_params):
        raise InputError(path, "train.init_from: its parameters' names or shapes differ from "
                               "those of this run's model config (only fpn_lookahead and "
                               "restore_seconds may differ from the config it was trained "
                               "with)")
    return jax.tree.map(lambda p, q: jnp.asarray(p, q.dtype), model.params, fresh_params)


def _check_finite(step: int, metrics, workdir: Path) -> None:
    for key in ("g_total", "d_loss"):
        value = float(metrics[key])
        if not math.isfinite(value):
            raise InputError(workdir / "config.yaml",
                             f"{key} became {value} at step {step}; lower optim.lr_g/lr_d "
                             "(or check the data) and rerun — the run resumes from its last "
                             "finite checkpoint")


def _check_resumed(config: GeneratorRunConfig, syncers_run, workdir: Path, manifest) -> None:
    loop.check_resumed_config(GeneratorRunConfig, config, workdir / "config.yaml",
                              _RESUMABLE_CHANGES)
    info = read_json(workdir / "run.json")
    before = info.get("syncers_run")
    if before and before != str(Path(syncers_run).resolve()):
        raise InputError(workdir / "run.json", f"this run was trained against the syncers "
                                               f"{before}, not {Path(syncers_run).resolve()} "
                                               "(use a new --out)")
    syncer_train.check_resumed_data(info, manifest, workdir / "run.json")


def _round(value) -> float:
    return round(float(value), 7)
