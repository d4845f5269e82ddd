"""Generator speed, as fractions of bounds measured in the same process (DESIGN.md, "Performance").

Prints one JSON object:
- ``calibration``: ``bench.calibrate`` (fp32 matmul GFLOP/s, weight-streaming GB/s);
- ``params``: G (and per part), D_f, D_s;
- ``batch1``: 120 frames at batch 1 after compilation — frames/s and the fraction of the
  weight-streaming bound (bytes of the parameters one generated frame reads ÷ stream GB/s;
  the FPN and the audio part of the branches run once per sequence, not per frame);
- ``batch32``: 120 frames at batch 32 — frames/s and the fraction of the matmul bound (FLOPs
  from XLA's cost analysis ÷ matmul GFLOP/s). XLA's cost analysis counts a while loop's body
  once, so FLOPs = cost(rollout) + (n − 1)·cost(one scan step) (the step is costed on its own,
  ``motion.rollout.decode_step``);
- ``g_train_rollout``: forward + backward of L_rec through a 40-frame rollout at batch 8, FLOPs
  counted the same way with the backward step ≈ 2× the forward step;
- ``train_step``: the whole ``motion.train.train_step`` (D and G), batch 8, 40 frames, with a
  stand-in syncer scorer;
- compile times of each.

Usage: ``python -m bench.bench_generator [--config configs/generator.yaml] [--frames 120]``.
"""
from __future__ import annotations

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp

from bench.calibrate import best_seconds, calibrate
from motion.config import GeneratorRunConfig
from motion.discriminators import FrameDiscriminator, SequenceDiscriminator
from motion.generator import Generator, branch_scales, count_params, init_params
from motion.rollout import decode_step, empty_cache, rollout
from syncers.config import load


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def _compile(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def _inputs(config, batch, n_frames, key):
    k1, k2 = jax.random.split(key)
    x_obs = 0.1 * jax.random.normal(k1, (batch, config.obs_len, 10, 6))
    audio = jax.random.normal(k2, (batch, 4 * (config.obs_len + n_frames + config.lookahead),
                                   config.audio_features))
    return x_obs, audio


def _step_flops(params, config, batch) -> float:
    """FLOPs of one scan step (one generated frame for the whole batch)."""
    carry = (jnp.zeros((batch, 10, 6)), empty_cache(config, batch), empty_cache(config, batch),
             jnp.int32(5))
    a_proj = jnp.zeros((batch, config.levels, config.branch_hidden))
    step = functools.partial(decode_step, config=config, scales=branch_scales(config.levels))
    compiled, _ = _compile(step, params, carry, a_proj)
    return _flops(compiled)


def per_frame_bytes(params) -> int:
    """Bytes of parameters one generated frame reads: all of G but the FPN and the audio part
    of the branches' first layer (computed once per sequence, outside the scan)."""
    read = {k: v for k, v in params.items() if k != "fpn"}
    return 4 * (count_params(read) - params["head"]["w_audio"].size)


def bench_generation(params, config, batch, n_frames, key):
    x_obs, audio = _inputs(config, batch, n_frames, key)
    fn = functools.partial(rollout, n_frames=n_frames, config=config)
    compiled, compile_s = _compile(fn, params, x_obs, audio)
    seconds = best_seconds(compiled, params, x_obs, audio, repeats=3)
    flops = _flops(compiled) + (n_frames - 1) * _step_flops(params, config, batch)
    return {"batch": batch, "frames": n_frames, "seconds": round(seconds, 4),
            "frames_per_s": round(batch * n_frames / seconds, 1), "gflop": round(flops / 1e9, 3),
            "gflops_achieved": round(flops / seconds / 1e9, 1),
            "compile_s": round(compile_s, 1)}


def bench_train_rollout(params, config, batch, n_frames, key):
    x_obs, audio = _inputs(config, batch, n_frames, key)
    target = jnp.zeros((batch, n_frames, 10, 6))

    def loss(params, x_obs, audio):
        return jnp.mean((rollout(params, x_obs, audio, n_frames, config=config) - target) ** 2)

    compiled, compile_s = _compile(jax.value_and_grad(loss), params, x_obs, audio)
    seconds = best_seconds(compiled, params, x_obs, audio, repeats=3)
    # forward step once more per frame, backward ≈ 2 forward (counted once by cost analysis)
    flops = _flops(compiled) + (n_frames - 1) * 3 * _step_flops(params, config, batch)
    return {"batch": batch, "frames": n_frames, "seconds": round(seconds, 4),
            "sequences_per_s": round(batch / seconds, 2), "gflop": round(flops / 1e9, 3),
            "gflops_achieved": round(flops / seconds / 1e9, 1),
            "compile_s": round(compile_s, 1)}


def bench_train_step(run, batch, n_frames, key):
    """Full ``motion.train.train_step`` (D and G). The syncers are a stand-in scorer (a frozen
    linear projection per modality, cosine): the real syncers' cost is not included."""
    from motion.train import create_train_state, train_step

    def score(frozen, level, audio, motion):
        a = audio.mean(1) @ frozen["a"]
        m = motion.mean(1) @ frozen["m"]
        return jnp.sum(a * m, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(m, axis=-1))

    config = run.model
    state = jax.jit(create_train_state, static_argnums=(0, 2))(run, key, n_frames)
    obs = config.obs_len
    k1, k2 = jax.random.split(key)
    batch_in = {"keypoints": 0.1 * jax.random.normal(k1, (batch, obs + n_frames, 10, 6)),
                "audio_features": jax.random.normal(k2, (batch, 4 * (obs + n_frames), 26))}
    frozen = {"a": jnp.ones((26, 8)), "m": jnp.ones((60, 8))}
    fn = functools.partial(train_step, run=run, score_fn=score)
    compiled, compile_s = _compile(fn, state, frozen, batch_in, key)
    seconds = best_seconds(compiled, state, frozen, batch_in, key, repeats=3)
    # the rollout's scan body is counted once by XLA: add (n − 1)·(forward + ≈2× backward)
    flops = _flops(compiled) + (n_frames - 1) * 3 * _step_flops(state.g_params, config, batch)
    return {"batch": batch, "frames": n_frames, "seconds": round(seconds, 4),
            "sequences_per_s": round(batch / seconds, 2), "gflop": round(flops / 1e9, 3),
            "gflops_achieved": round(flops / seconds / 1e9, 1),
            "compile_s": round(compile_s, 1),
            "note": "D_s LSTM scans are also counted once by XLA: FLOPs are a lower bound"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/generator.yaml")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--skip-train", action="store_true")
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

    b1 = bench_generation(params, config, 1, args.frames, key)
    nbytes = per_frame_bytes(params)
    bound_fps = machine["stream_gbps"] * 1e9 / nbytes
    b1.update(bytes_per_frame=nbytes, bound_frames_per_s=round(bound_fps, 1),
              fraction_of_stream_bound=round(b1["frames_per_s"] / bound_fps, 3))
    out["batch1"] = b1

    b32 = bench_generation(params, config, 32, args.frames, key)
    b32["fraction_of_matmul_bound"] = round(b32["gflops_achieved"] / machine["matmul_gflops"], 3)
    out["batch32"] = b32

    if not args.skip_train:
        tr = bench_train_rollout(params, config, 8, 40, key)
        tr["fraction_of_matmul_bound"] = round(tr["gflops_achieved"] / machine["matmul_gflops"],
                                               3)
        out["g_train_rollout"] = tr
        ts = bench_train_step(run, 8, 40, key)
        ts["fraction_of_matmul_bound"] = round(ts["gflops_achieved"] / machine["matmul_gflops"],
                                               3)
        out["train_step"] = ts
    out["calibration_after"] = calibrate()     # the machine is shared: show the drift
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
