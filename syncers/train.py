"""Stage 1: train the syncer pyramid (``msync train syncers``; docs/design.md, "Syncers").

One syncer per level i (paper eq. 1–2, 5), each trained on level i of both modalities'
pyramids, one level after the other. Per level there is one pure ``train_step(state, batch)``,
jitted once with the state donated; Adam (optax); an orbax ``CheckpointManager`` under
``RUN/checkpoints/level_<i>`` saving every ``train.checkpoint_every`` steps and at the end
(orbax writes to a temporary directory and renames it: a killed run never leaves a half
checkpoint). Batches are a pure function of ``(seed, level, step)`` (``sampling.Sampler``) and
the parameters' initial values of ``(seed, level)``, so rerunning the same command restores the
last step and ends bit-identical to an uninterrupted run.

Data parallel over every device of every process (``syncers.run.parallel``): the batch is split
over a ``data`` mesh axis, the state replicated, and each process samples only its rows of
each global batch (``sampling.batch_size`` is global). ``--distributed`` starts
``jax.distributed`` first; orbax then writes each checkpoint collectively and only process 0
writes ``config.yaml``, ``run.json`` and ``metrics.jsonl``.

A run directory holds ``config.yaml`` (the resolved config), ``run.json`` (data root,
``keypoint_space``, feature config, motion/audio widths, score kind, steps and seconds per
level), ``metrics.jsonl`` (one row per ``train.log_every`` steps: step, level, loss, accuracy of
picking the positive, temperature, lr, steps_per_s; rows past the restored step are dropped
on resume, so none are duplicated) and the checkpoints. :func:`load_run` reads a run back for
``evaluate`` and the generator.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

import configs
from syncers import objectives
from syncers.data.dataset import load_split, read_manifest
from syncers.data.features import feature_mismatch
from syncers.models import ModelConfig, Syncer, init_params
from syncers.objectives import ObjectiveConfig
from syncers.run import config as config_lib
from syncers.run import loop, parallel, progress
from syncers.run.config import count, non_negative, positive, ranged
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
from syncers.sampling import DataConfig, Sampler, SamplingConfig

DEFAULT_CONFIG = configs.path("syncers.yaml")
# Keys that may differ between a run and its resumption: where the data is, which levels.
_RESUMABLE_CHANGES = ("data_root", "train.levels")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = positive(1e-4)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = non_negative(0)
    grad_clip: float = non_negative(1.0)     # global-norm clip; 0 switches it off


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = count(20000)      # per level
    levels: tuple[int, ...] = ranged((1, 2, 3, 4), ge=1, le=4)
    checkpoint_every: int = count(1000)
    log_every: int = count(50)
    max_to_keep: int = count(2)
    seed: int = non_negative(0)


@dataclasses.dataclass(frozen=True)
class SyncersConfig:
    data_root: str = ""            # filled from --data
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    sampling: SamplingConfig = SamplingConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()


# --------------------------------------------------------------------------- state and step

@flax.struct.dataclass
class TrainState:
    """One level's training state; the optimizer itself is rebuilt from the config, so the
    state is plain arrays (what orbax checkpoints) and equal configs share one compiled step."""
    step: jax.Array
    params: Any
    opt_state: Any


def make_optimizer(config: OptimConfig, steps: int):
    """``(tx, schedule)``: Adam with an optional warm-up/cosine schedule and norm clipping."""
    if config.schedule == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0 if config.warmup_steps else config.learning_rate, config.learning_rate,
            config.warmup_steps, max(steps, config.warmup_steps + 1),
            end_value=0.1 * config.learning_rate)
    elif config.warmup_steps:
        schedule = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    else:
        schedule = optax.constant_schedule(config.learning_rate)
    tx = optax.adam(schedule)
    if config.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)
    return tx, schedule


def create_state(config: SyncersConfig, level: int, motion_dim: int, audio_dim: int,
                 stats: dict[str, np.ndarray] | None = None, mesh=None) -> TrainState:
    """Initial state of one level: ``params = {"syncer": ..., "objective": {"log_temperature"}}``.

    ``stats`` (per-channel means/stds of the level's data) replace the model's normalisers.
    The state is replicated over ``mesh`` (default: every device, ``parallel.data_mesh``).
    """
    model = Syncer(config.model, motion_dim, audio_dim)
    variables = init_params(model, [config.train.seed, level])
    syncer_params = dict(variables["params"])
    for name, value in (stats or {}).items():
        syncer_params[name] = jnp.asarray(value, jnp.float32)
    params = {"syncer": {"params": syncer_params},
              "objective": objectives.init_params(config.objective)}
    tx, _ = make_optimizer(config.optim, config.train.steps)
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))
    # Committed to the mesh like restored checkpoints and step outputs are, so a fresh and a
    # resumed state hit the same compiled step (jit keys its cache on shardings too).
    return parallel.replicate(state, mesh if mesh is not None else parallel.data_mesh())


def train_step(state: TrainState, batch: dict[str, jax.Array], *, model: Syncer,
               objective: ObjectiveConfig, tx: optax.GradientTransformation
               ) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on a batch ``{"motion": [B, 5, M], "audio": [B, C, 20, F]}``."""

    def loss_fn(params):
        e_a = model.apply(params["syncer"], batch["audio"], method=Syncer.embed_audio)
        e_x = model.apply(params["syncer"], batch["motion"], method=Syncer.embed_motion)
        loss, accuracy = objectives.loss(objective, params["objective"], e_a, e_x)
        return loss, accuracy

    (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    state = TrainState(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)
    metrics = {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads),
               "temperature": objectives.temperature(objective, state.params["objective"])}
    return state, metrics


def jit_train_step(model: Syncer, objective: ObjectiveConfig, optim: OptimConfig, steps: int,
                   mesh=None):
    """The step, jitted once per (model, objective, optimizer, mesh) — cached, so resuming or
    retraining in one process reuses the compiled code; the input state is donated. The batch
    is split over ``mesh``'s ``data`` axis, state and metrics replicated (default mesh: every
    device)."""
    return _jit_train_step(model, objective, optim, steps,
                           mesh if mesh is not None else parallel.data_mesh())


@functools.lru_cache(maxsize=8)
def _jit_train_step(model, objective, optim, steps, mesh):
    tx, _ = make_optimizer(optim, steps)
    return parallel.data_parallel_jit(
        functools.partial(train_step, model=model, objective=objective, tx=tx), mesh, n_args=2)


# --------------------------------------------------------------------------- the run

def train_and_evaluate(config: SyncersConfig, workdir: str | os.PathLike,
                       stop_after: int | None = None) -> dict[str, Any]:
    """Train (or resume) every level in ``config.train.levels``; returns ``run.json``'s dict.

    ``stop_after`` ends this invocation (after a checkpoint) once that many steps ran — for
    tests of resumption and for time-boxed jobs; rerunning continues where it stopped.
    """
    workdir = Path(workdir)
    levels = tuple(sorted(set(config.train.levels)))
    if not levels or min(levels) < 1:
        raise InputError("--set", f"train.levels must be levels >= 1; got {list(levels)}")
    tc = config.train
    if min(tc.steps, tc.checkpoint_every, tc.log_every, tc.max_to_keep,
           config.sampling.batch_size) < 1:
        raise InputError("--set", "train.steps, train.checkpoint_every, train.log_every, "
                                  "train.max_to_keep and sampling.batch_size must be >= 1")
    mesh = parallel.data_mesh()
    parallel.check_batch_size(config.sampling.batch_size, mesh)
    manifest = read_manifest(config.data_root)
    clips = load_split(manifest.root, "train", manifest)
    sampler = Sampler(clips, levels, config.data, config.sampling, config.train.seed)
    primary = parallel.is_primary()
    # The whole run under RUN/.lock: a second process on this --out is refused, and checking
    # the old config then writing the new one cannot interleave with another writer.
    with locked(workdir, hold=primary):
        return _train_locked(config, workdir, levels, manifest, sampler, mesh, primary,
                             stop_after)


def _train_locked(config: SyncersConfig, workdir: Path, levels: tuple[int, ...], manifest,
                  sampler: Sampler, mesh, primary: bool, stop_after: int | None) -> dict:
    """:func:`train_and_evaluate` once the run directory is locked."""
    loop.check_resumed_config(SyncersConfig, config, workdir / "config.yaml",
                              _RESUMABLE_CHANGES)
    check_resumed_data(read_json(workdir / "run.json"), manifest, workdir / "run.json")
    parallel.sync("msync-syncers-config-checked")    # every process read the old config
    if primary:
        # What killed writers of this run left (msync's temporary names only; the lock says
        # no writer is running).
        remove_leftovers(*(workdir / name for name in RUN_FILES))
        config_lib.dump(config, workdir / "config.yaml")
    info = read_json(workdir / "run.json")
    info.update({"data_root": str(manifest.root), "keypoint_space": manifest.keypoint_space,
                 "features": manifest.features, "fps": manifest.fps,
                 "motion_dim": sampler.motion_dim, "audio_dim": sampler.audio_dim,
                 "score": objectives.score_kind(config.objective),
                 "n_train_clips": sampler.n_clips})
    info.setdefault("levels", {})

    # Restore every level first, so a damaged checkpoint is reported before any work.
    model = Syncer(config.model, sampler.motion_dim, sampler.audio_dim)
    states, managers = {}, {}
    for level in levels:
        directory = workdir / "checkpoints" / f"level_{level}"
        managers[level] = checkpoint_manager(directory, config.train.max_to_keep)
        fresh = create_state(config, level, sampler.motion_dim, sampler.audio_dim,
                             sampler.stats(level), mesh)
        states[level] = loop.restore(managers[level], fresh, directory)
    if primary:
        truncate_metrics(workdir / "metrics.jsonl",
                         {lv: int(s.step) for lv, s in states.items()})
        write_json(workdir / "run.json", info)

    total = config.train.steps * len(levels)
    done = sum(min(int(s.step), config.train.steps) for s in states.values())
    ran = 0
    bar = progress.bar(total, "syncers", "step", initial=done, disable=not primary)
    start_all = time.perf_counter()
    # One jitted step for all levels: levels with equal batch shapes (1–3 by default) share
    # the compiled executable; XLA on a CPU takes seconds per compile.
    step_fn = jit_train_step(model, config.objective, config.optim, config.train.steps, mesh)
    _, schedule = make_optimizer(config.optim, config.train.steps)
    try:
        for level in levels:
            state = states[level]
            if int(state.step) >= config.train.steps:
                continue
            if stop_after is not None and ran >= stop_after:
                break
            state, n_ran, stopped = _train_level(
                level, state, step_fn, sampler, managers[level], schedule, config.train,
                workdir, bar, budget=None if stop_after is None else stop_after - ran,
                mesh=mesh)
            ran += n_ran
            states[level] = state
            entry = info["levels"].setdefault(str(level), {"steps": 0, "seconds": 0.0})
            entry["steps"] = int(state.step)
            entry["seconds"] = round(entry["seconds"] + stopped["seconds"], 3)
            if primary:
                write_json(workdir / "run.json", info)
            if stopped["stopped"]:
                break
    finally:
        bar.close()
        for manager in managers.values():
            manager.close()
    # No process returns before process 0 has written run.json: a run is complete for every
    # process whose command has exited (a script may read it next, from any node).
    parallel.sync("msync-syncers-run-written")
    finished = all(int(s.step) >= config.train.steps for s in states.values())
    if primary:
        print(f"msync: syncers levels {','.join(map(str, levels))}: "
              f"{'done' if finished else 'stopped'} at steps "
              f"{', '.join(str(int(states[lv].step)) for lv in levels)} of "
              f"{config.train.steps} on {parallel.describe(mesh)} "
              f"({time.perf_counter() - start_all:.1f} s) -> {workdir}", file=sys.stderr)
    return info


def check_resumed_data(info: dict, manifest, path: Path) -> None:
    """Refuse to resume the run whose ``run.json`` holds ``info`` on a dataset (``--data`` or a
    changed ``data_root``) of another keypoint space or other audio features than it started
    on."""
    space = info.get("keypoint_space")
    if space is not None and space != manifest.keypoint_space:
        raise InputError(manifest.root / "manifest.json",
                         f"keypoint_space {manifest.keypoint_space!r} differs from the "
                         f"{space!r} this run was trained on ({path}); use a new --out")
    mismatch = feature_mismatch(manifest.features, info.get("features")) \
        if "features" in info else None
    if mismatch:
        raise InputError(manifest.root / "manifest.json",
                         f"the data's audio features differ from those this run was trained "
                         f"on ({mismatch}; {path}); use a new --out")


def _train_level(level, state, step_fn, sampler, manager, schedule, train: TrainConfig,
                 workdir, bar, budget, mesh):
    """At most ``budget`` steps of one level: ``(state, steps ran, {"stopped", "seconds"})``.

    Each process samples its rows of the global batch; only process 0 logs metrics."""
    size = sampler.config.batch_size
    rows = parallel.local_rows(size, mesh)

    def dispatch(state, step):
        return step_fn(state, parallel.global_batch(sampler.batch(level, step, rows), mesh, size))

    def log_row(done, values, steps_per_s):
        row = {"step": done, "level": level, "loss": float(values["loss"]),
               "accuracy": float(values["accuracy"]),
               "temperature": float(values["temperature"]),
               "grad_norm": float(values["grad_norm"]), "lr": float(schedule(done - 1)),
               "steps_per_s": round(steps_per_s, 3)}
        bar.set_postfix(level=level, loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
        return row

    result = loop.run_steps(
        state, dispatch, steps=train.steps, log_every=train.log_every,
        checkpoint_every=train.checkpoint_every, budget=budget,
        check=lambda step, metrics: _check_finite(step, metrics, level, workdir),
        log_row=log_row, checkpoint=lambda state: loop.save(manager, state), bar=bar,
        metrics_path=workdir / "metrics.jsonl", primary=parallel.is_primary())
    return result.state, result.ran, {"stopped": result.stopped, "seconds": result.seconds}


def _check_finite(step: int, metrics, level: int, workdir: Path) -> None:
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise InputError(workdir / "config.yaml",
                         f"the level {level} loss became {loss} at step {step}; lower "
                         "optim.learning_rate (or check the data) and rerun — the run resumes "
                         "from its last finite checkpoint")


# --------------------------------------------------------------------------- reading a run

@dataclasses.dataclass(frozen=True)
class TrainedSyncers:
    """A trained run: ``model`` (the same module for every level) and ``params[level]``."""
    config: SyncersConfig
    info: dict
    model: Syncer
    params: dict[int, Any]

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(sorted(self.params))


def load_run(run: str | os.PathLike, levels: Sequence[int] | None = None) -> TrainedSyncers:
    """Read ``RUN/config.yaml``, ``RUN/run.json`` and each level's latest checkpoint."""
    run = Path(run)
    if not (run / "config.yaml").is_file() or not (run / "run.json").is_file():
        raise InputError(run, "not a syncer run (no config.yaml/run.json; train one with "
                              "`msync train syncers`)")
    config = config_lib.load(SyncersConfig, run / "config.yaml")
    info = read_json(run / "run.json")
    trained = sorted(int(k) for k, v in info.get("levels", {}).items() if v.get("steps"))
    levels = tuple(levels) if levels else tuple(trained)
    missing = [lv for lv in levels if lv not in trained]
    if missing or not levels:
        raise InputError(run, f"has no trained level {missing or ''} (trained: {trained})")
    model = Syncer(config.model, int(info["motion_dim"]), int(info["audio_dim"]))
    params = {}
    for level in levels:
        directory = run / "checkpoints" / f"level_{level}"
        # A reader: a trainer may be writing this run right now (its temporary save stays).
        manager = checkpoint_manager(directory, reader=True)
        try:
            fresh = create_state(config, level, model.motion_dim, model.audio_dim)
            state = loop.restore(manager, fresh, directory, reader=True)
        finally:
            manager.close()
        if int(state.step) == 0:
            raise InputError(directory, "holds no checkpoint")
        params[level] = state.params["syncer"]
    return TrainedSyncers(config=config, info=info, model=model, params=params)
