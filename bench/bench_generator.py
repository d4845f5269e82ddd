"""Generator speed, as fractions of bounds measured in the same process (docs/design.md,
"Performance yardsticks").

Prints one JSON object:
- ``calibration`` / ``calibration_after``: ``bench.calibrate`` (fp32 matmul GFLOP/s,
  weight-streaming GB/s) at the start and at the end; ``bounds``: the higher of the two for
  each, which every ``fraction_of_*`` below is taken against (:func:`bounds`);
- ``params``: G (and per part), D_f, D_s, one paper-size syncer;
- ``batch1``: 120 frames at batch 1 after compilation — frames/s and the fraction of the
  weight-streaming bound (bytes of the parameters one generated frame reads ÷ stream GB/s;
  the FPN and the audio part of the branches run once per sequence, not per frame);
- ``batch32``: 120 frames at batch 32 — frames/s and the fraction of the matmul bound (both
  generation figures time a loaded model's path, ``motion.model.ready``: the per-frame
  weights are prepared once per model, not per call);
- ``train_step``: the whole ``motion.train.train_step`` (one D and one G step), batch 8,
  40-frame sequences, scored by four paper-size syncers (``configs/syncers.yaml``, random
  parameters: the cost does not depend on their values), compiled with the XLA options
  ``msync train generator`` uses (``motion.train.step_compiler_options``, reported as
  ``compiler_options``) — sequences/s, FLOPs, fraction of the matmul bound, compile time;
- ``train_parts``: where a training step's time goes, each part jitted and timed on its own:
  ``g_rollout`` (forward + backward of a 40-frame rollout, the backward seeded by L_rec),
  ``discriminators`` (D_f + D_s: D's hinge step on real and generated sequences and the
  adversarial gradient w.r.t. the generated frames), ``syncers`` (L_AV^MS and its gradient
  w.r.t. the generated frames), with the step's XLA options; ``rest`` = the step minus the
  parts (optimisers, glue).

FLOPs: XLA's cost analysis (``compiled.cost_analysis()``) counts a loop body once, whatever its
trip count — the rollout's scan (forward and transposed) and D_s's LSTM scans. So ``gflop`` =
XLA's count + the matmul/convolution FLOPs of the missing iterations, taken from the jaxpr
(``jaxpr_flops``: every ``dot_general``/``conv_general_dilated``, scan bodies × their length);
``gflop_xla_raw`` is XLA's count as reported. The fraction of the matmul bound is
``gflop / seconds ÷ matmul GFLOP/s``.

Usage: ``python -m bench.bench_generator [--config configs/generator.yaml] [--frames 120]
[--skip-generation] [--skip-train] [--unroll 4]``.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core

from bench.calibrate import best_seconds, calibrate
from motion import losses
from motion import train as motion_train
from motion.config import GeneratorRunConfig
from motion.discriminators import FrameDiscriminator, SequenceDiscriminator
from motion.generator import count_params, init_params
from motion.model import GeneratorModel, ready
from motion.rollout import rollout
from syncers.run.config import load

SYNCERS_CONFIG = "configs/syncers.yaml"
TRAIN_BATCH = 8          # the yardstick: one D + G step, batch 8, 40-frame sequences
TRAIN_FRAMES = 40


# --------------------------------------------------------------------------- FLOPs

def _xla_flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def _dot_flops(eqn) -> float:
    (contract, _), _ = eqn.params["dimension_numbers"]
    lhs = eqn.invars[0].aval.shape
    out = eqn.outvars[0].aval.shape
    return 2.0 * math.prod(out) * math.prod(lhs[d] for d in contract)


def _conv_flops(eqn) -> float:
    rhs = eqn.invars[1].aval.shape
    out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) / rhs[out_feature_dim]


def _count(jaxpr, loops: bool) -> float:
    """Matmul + convolution FLOPs of a jaxpr; scan bodies × length when ``loops``, else once
    (as XLA's cost analysis counts them). A while loop's trip count is unknown: counted once."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            times = eqn.params["length"] if loops else 1
            total += times * _count(eqn.params["jaxpr"].jaxpr, loops)
        elif name == "cond":
            total += max(_count(b.jaxpr, loops) for b in eqn.params["branches"])
        else:
            for value in eqn.params.values():
                if isinstance(value, jax_core.ClosedJaxpr):
                    total += _count(value.jaxpr, loops)
                elif isinstance(value, jax_core.Jaxpr):
                    total += _count(value, loops)
    return total


def jaxpr_flops(fn, *args) -> tuple[float, float]:
    """``(FLOPs with every loop iteration, FLOPs with loop bodies once)`` of matmuls/convs."""
    jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
    return _count(jaxpr, True), _count(jaxpr, False)


def measure(fn, *args, repeats: int = 3, compiler_options: tuple = ()) -> dict:
    """Compile ``fn`` for ``args`` (with XLA ``compiler_options``, sorted pairs), time it,
    count its FLOPs (see the module docstring)."""
    start = time.perf_counter()
    compiled = jax.jit(fn, compiler_options=dict(compiler_options) or None).lower(
        *args).compile()
    compile_s = time.perf_counter() - start
    seconds = best_seconds(compiled, *args, repeats=repeats)
    raw = _xla_flops(compiled)
    every, once = jaxpr_flops(fn, *args)
    flops = raw + every - once
    return {"seconds": round(seconds, 4), "gflop": round(flops / 1e9, 3),
            "gflop_xla_raw": round(raw / 1e9, 3), "gflop_matmul": round(every / 1e9, 3),
            "gflops_achieved": round(flops / seconds / 1e9, 1), "compile_s": round(compile_s, 1)}


def _fraction(result: dict, machine: dict) -> dict:
    result["fraction_of_matmul_bound"] = round(result["gflops_achieved"]
                                               / machine["matmul_gflops"], 3)
    return result


def bounds(before: dict, after: dict) -> dict:
    """The bounds the fractions are taken against: the higher of the two calibrations for each.
    The host's speed drifts by tens of per cent within a minute (shared cores); the faster
    reading is the better estimate of what the machine can do, and dividing by it never
    flatters a figure."""
    return {"matmul_gflops": max(before["matmul_gflops"], after["matmul_gflops"]),
            "stream_gbps": max(before["stream_gbps"], after["stream_gbps"])}


def _apply_bounds(out: dict, bound: dict) -> None:
    if "batch1" in out:
        b1 = out["batch1"]
        bound_fps = bound["stream_gbps"] * 1e9 / b1["bytes_per_frame"]
        b1.update(bound_frames_per_s=round(bound_fps, 1),
                  fraction_of_stream_bound=round(b1["frames_per_s"] / bound_fps, 3))
    for name, result in out.items():
        if name.startswith("batch32") or name == "train_step":
            _fraction(result, bound)
    for part in out.get("train_parts", {}).values():
        if "gflops_achieved" in part:
            _fraction(part, bound)


# --------------------------------------------------------------------------- generation

def _inputs(config, batch, n_frames, key):
    k1, k2 = jax.random.split(key)
    x_obs = 0.1 * jax.random.normal(k1, (batch, config.obs_len, 10, 6))
    audio = jax.random.normal(k2, (batch, 4 * (config.obs_len + n_frames + config.lookahead),
                                   config.audio_features))
    return x_obs, audio


def per_frame_bytes(params) -> int:
    """Bytes of parameters one generated frame reads: all of G but the FPN and the audio part
    of the branches' first layer (computed once per sequence, outside the scan)."""
    read = {k: v for k, v in params.items() if k != "fpn"}
    return 4 * (count_params(read) - params["head"]["w_audio"].size)


def bench_generation(params, config, batch, n_frames, key, unroll: int = 1):
    """The generation path of a loaded model (``motion.model.ready``): per-frame weights
    prepared once per model, outside the timed call."""
    x_obs, audio = _inputs(config, batch, n_frames, key)
    weights = ready(GeneratorModel(params, config)).frame_weights

    def fn(params, weights, x_obs, audio):
        return rollout(params, x_obs, audio, n_frames, config=config, unroll=unroll,
                       weights=weights)
    out = {"batch": batch, "frames": n_frames, "unroll": unroll,
           **measure(fn, params, weights, x_obs, audio)}
    out["frames_per_s"] = round(batch * n_frames / out["seconds"], 1)
    return out


# --------------------------------------------------------------------------- training

def paper_syncers(seed: int = 0):
    """``(score_fn, frozen)``: four paper-size syncers (random parameters) as the training step
    sees them (``motion.train.syncer_score_fn``)."""
    from motion.train import syncer_score_fn
    from syncers.models import Syncer
    from syncers.models import init_params as syncer_init
    from syncers.train import SyncersConfig

    config = load(SyncersConfig, SYNCERS_CONFIG)
    model = Syncer(config.model, 60, 26)
    frozen = {level: syncer_init(model, seed + level) for level in (1, 2, 3, 4)}
    return syncer_score_fn(model, "cos"), frozen


def _train_inputs(run, batch, n_frames, key):
    obs = run.model.obs_len
    k1, k2 = jax.random.split(key)
    return {"keypoints": 0.1 * jax.random.normal(k1, (batch, obs + n_frames, 10, 6)),
            "audio_features": jax.random.normal(k2, (batch, 4 * (obs + n_frames),
                                                     run.model.audio_features))}


def _discriminate(run, d_params, d_stats, x_obs, x, update):
    """The training step's discriminator call (``motion.train._discriminate``), scores only."""
    return motion_train._discriminate(run, d_params, d_stats, x_obs, x, update)[:2]


def bench_train(run, batch, n_frames, key, repeats=3):
    """The whole step and its parts (see the module docstring)."""
    from motion.train import create_train_state, step_compiler_options, train_step

    score_fn, frozen = paper_syncers()
    state = jax.jit(create_train_state, static_argnums=(0, 2))(run, key, n_frames)
    inputs = _train_inputs(run, batch, n_frames, key)
    obs = run.model.obs_len
    x_obs, real = inputs["keypoints"][:, :obs], inputs["keypoints"][:, obs:]
    audio = inputs["audio_features"]
    fake = real + 0.01

    step = functools.partial(train_step, config=run, score_fn=score_fn)
    # The XLA options `msync train generator` compiles its step with (motion.train).
    options = step_compiler_options(jax.devices()[0].platform)
    whole = measure(step, state, frozen, inputs, repeats=repeats, compiler_options=options)
    whole.update(batch=batch, frames=n_frames, compiler_options=dict(options),
                 sequences_per_s=round(batch / whole["seconds"], 3))

    def g_rollout(g_params):
        def l_rec(g):
            return losses.reconstruction(real, rollout(g, x_obs, audio, n_frames,
                                                       config=run.model))
        return jax.value_and_grad(l_rec)(g_params)

    def discriminators(d_params, d_stats, fake):
        def d_loss(d):
            sf, ss = _discriminate(run, d, d_stats, jnp.concatenate([x_obs, x_obs]),
                                   jnp.concatenate([real, fake]), True)
            return losses.d_hinge(sf[:batch], sf[batch:]) + losses.d_hinge(ss[:batch],
                                                                           ss[batch:])

        def g_adv(f):
            sf, ss = _discriminate(run, d_params, d_stats, x_obs, f, False)
            return losses.g_hinge(sf) + losses.g_hinge(ss)
        return jax.value_and_grad(d_loss)(d_params), jax.value_and_grad(g_adv)(fake)

    def syncers(frozen, fake):
        score = functools.partial(score_fn, frozen)
        return jax.value_and_grad(lambda f: losses.av_multiscale(
            score, f, audio[:, 4 * obs:], run.loss)[0])(fake)

    parts = {"g_rollout": measure(g_rollout, state.g_params, repeats=repeats,
                                  compiler_options=options),
             "discriminators": measure(discriminators, state.d_params, state.d_stats, fake,
                                       repeats=repeats, compiler_options=options),
             "syncers": measure(syncers, frozen, fake, repeats=repeats,
                                compiler_options=options)}
    for part in parts.values():
        part["share_of_step"] = round(part["seconds"] / whole["seconds"], 3)
    rest = whole["seconds"] - sum(p["seconds"] for p in parts.values())
    parts["rest"] = {"seconds": round(rest, 4), "share_of_step": round(rest / whole["seconds"],
                                                                       3)}
    return whole, parts, count_params(frozen[1]["params"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/generator.yaml")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unroll", type=int, nargs="*", default=[],
                        help="also time batch-32 generation with the rollout's scan unrolled")
    args = parser.parse_args(argv)
    run = load(GeneratorRunConfig, args.config)
    config = run.model
    machine = calibrate()
    key = jax.random.PRNGKey(0)
    params = jax.jit(init_params, static_argnums=0)(config, key)
    x = jnp.zeros((1, 40, 10, 6))
    d_f = jax.eval_shape(FrameDiscriminator(run.discriminators).init, key, x)
    d_s = jax.eval_shape(SequenceDiscriminator(run.discriminators).init, key, x[:, :3], x)
    out = {"config": args.config, "calibration": machine,
           "params": {"G": count_params(params),
                      "G_parts": {k: count_params(v) for k, v in params.items()},
                      "D_f": count_params(d_f["params"]), "D_s": count_params(d_s["params"])}}

    if not args.skip_generation:
        out["batch1"] = bench_generation(params, config, 1, args.frames, key)
        out["batch1"]["bytes_per_frame"] = per_frame_bytes(params)
        out["batch32"] = bench_generation(params, config, 32, args.frames, key)
        for unroll in args.unroll:      # the scan unrolled: fewer loop iterations to fuse across
            out[f"batch32_unroll{unroll}"] = bench_generation(params, config, 32, args.frames,
                                                              key, unroll)

    if not args.skip_train:
        whole, parts, syncer_params = bench_train(run, TRAIN_BATCH, TRAIN_FRAMES, key,
                                                  args.repeats)
        out["params"]["syncer_per_level"] = syncer_params
        out["train_step"] = whole
        out["train_parts"] = parts
    out["calibration_after"] = calibrate()     # the machine is shared: show the drift
    out["bounds"] = bounds(machine, out["calibration_after"])
    _apply_bounds(out, out["bounds"])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
