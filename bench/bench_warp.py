"""Benchmark of the weight-free warp renderer (render/warp.py): frames/s at 256×256.

Prints one JSON object: for each chunk size, frames/s after compilation (median of repeats),
plus an in-run calibration of the machine (fp32 matmul GFLOP/s), because these shared CPUs
vary 2× from hour to hour (docs/design.md, "Performance yardsticks").

    .venv/bin/python bench/bench_warp.py [--frames 256] [--chunks 1,4,16,32,64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from render import warp


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of fp32 ``[n, n] @ [n, n]`` throughput in GFLOP/s."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def frames_per_second(chunk: int, frames: int, repeats: int, size: int, flow_size: int) -> float:
    rng = np.random.default_rng(0)
    source = rng.random((size, size, 3), np.float32)
    kp = np.zeros((10, 6), np.float32)
    kp[:, :2] = rng.uniform(-0.5, 0.5, (10, 2))
    kp[:, 2:] = [1, 0, 0, 1]
    noise = rng.normal(0, 0.02, (frames, 10, 6)).astype(np.float32)
    driving = kp[None] + noise * np.float32([1, 1, .1, .1, .1, .1])
    cfg = warp.WarpConfig(chunk=chunk, flow_size=flow_size)
    warp.render(source, kp, driving[:chunk], cfg)           # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        warp.render(source, kp, driving, cfg)
        times.append(time.perf_counter() - t)
    return frames / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=256)
    p.add_argument("--chunks", default="1,4,16,32,64")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--flow-size", type=int, default=warp.WarpConfig.flow_size)
    args = p.parse_args()
    gflops_before = matmul_gflops()
    fps = {int(c): round(frames_per_second(int(c), args.frames, args.repeats, args.size,
                                           args.flow_size), 1)
           for c in args.chunks.split(",")}
    gflops_after = matmul_gflops()
    print(json.dumps({
        "benchmark": "warp_render",
        "size": args.size, "flow_size": args.flow_size, "frames": args.frames,
        "frames_per_s_by_chunk": fps,
        "best_frames_per_s": max(fps.values()),
        # The warp is gather-bound, not matmul-bound; the calibration only says how loaded the
        # machine was, so this is a rough scaling to a quiet machine, not a bound.
        "best_frames_per_s_scaled_to_quiet": round(
            max(fps.values()) * 150.0 / max(1e-9, (gflops_before + gflops_after) / 2), 1),
        "calibration": {"matmul_fp32_gflops_before": round(gflops_before, 1),
                        "matmul_fp32_gflops_after": round(gflops_after, 1),
                        "quiet_machine_gflops": 150.0},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "backend": jax.default_backend()},
    }, indent=1))


if __name__ == "__main__":
    main()
