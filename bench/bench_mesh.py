"""Benchmark of the mesh renderer (render/mesh.py) against the warp renderer (render/warp.py):
frames/s at 256×256 (``--size``: 512×512) after compilation.

Prints one JSON object: for each renderer, frames/s streaming (batch 1: one frame per call, as
``render_chunks`` with ``chunk=1`` delivers them) and in batches of 32, the median of repeats,
the two renderers measured alternately in one process; the mesh's fold measure over the
motion (``mesh.fold_measure``: the smallest triangle area ratio, frames with a reversed
triangle or an uncovered pixel); plus an in-run calibration of the
machine (fp32 matmul GFLOP/s), because these shared CPUs vary 2× from hour to hour
(docs/design.md, "Performance yardsticks"). The source is the mean face on a random image,
driven by a mouth opening and closing, a blink and a small head motion.

    .venv/bin/python -m bench.bench_mesh [--frames 128] [--repeats 3] [--size 256]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import numpy as np

from bench.bench_warp import matmul_gflops
from render import mesh, warp
from syncers.data import landmark_space

# The speed asked of the mesh: batch 1 after compilation on the 2-core CPU, by frame side.
TARGETS = {256: 50, 512: 20}


def driving(kp: np.ndarray, frames: int) -> np.ndarray:
    """``[frames, 10, 6]``: the lips opening and closing at 4 Hz, a blink, a slow nod."""
    t = np.arange(frames) / 25.0
    out = np.repeat(kp[None], frames, axis=0)
    opening = 0.06 * (1 - np.cos(2 * np.pi * 4.0 * t)) / 2
    out[:, 8, 1] += opening
    out[:, 9, 1] += 0.6 * opening
    out[:, :, 1] += 0.02 * np.sin(2 * np.pi * 0.5 * t)[:, None]
    blink = np.clip(1 - np.abs(t - 1.0) * 8, 0, 1) * 0.9
    for k in (2, 3):
        out[:, k, 4:] *= (1 - blink)[:, None]
    return out.astype(np.float32)


def timed(fn, repeats: int) -> float:
    fn()                                                    # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    image = rng.random((args.size, args.size, 3), np.float32)
    landmarks = landmark_space.mean_face().astype(np.float32)
    kp = landmark_space.encode(landmarks)
    drv = driving(kp, args.frames)
    source = mesh.prepare(image, landmarks)

    def mesh_run(chunk):
        cfg = mesh.MeshConfig(chunk=chunk)
        return lambda: [f for f in mesh.render_chunks(source, kp, drv, cfg)]

    def warp_run(chunk):
        cfg = warp.WarpConfig(chunk=chunk)
        return lambda: [f for f in warp.render_chunks(image, kp, drv, cfg)]

    gflops_before = matmul_gflops()
    seconds = {}
    for chunk in (1, 32):
        runs = {"mesh": mesh_run(chunk), "warp": warp_run(chunk)}
        for run in runs.values():
            run()                                           # compile both first
        times = {name: [] for name in runs}
        for _ in range(args.repeats):                       # alternate, so drift hits both
            for name, run in runs.items():
                times[name].append(timed(run, 1))
        for name in runs:
            seconds[(name, chunk)] = statistics.median(times[name])
    gflops_after = matmul_gflops()
    fps = {f"{name}_batch{chunk}": round(args.frames / s, 1)
           for (name, chunk), s in seconds.items()}
    folds = mesh.fold_measure(source, kp, drv)
    print(json.dumps({
        "benchmark": "mesh_render",
        "size": args.size, "frames": args.frames, "repeats": args.repeats,
        "frames_per_s": fps,
        "target": f"mesh_batch1 >= {TARGETS.get(args.size, '?')} frames/s (2-core CPU)",
        "folds": {"min_jacobian": round(float(folds.min_jacobian.min()), 4),
                  "frames_folded": int((folds.folded > 0).sum()),
                  "frames_cracked": int((folds.uncovered > 0).sum())},
        "calibration": {"matmul_fp32_gflops_before": round(gflops_before, 1),
                        "matmul_fp32_gflops_after": round(gflops_after, 1),
                        "quiet_machine_gflops": 150.0},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "jax": jax.__version__, "backend": jax.default_backend(),
                    "load_average": [round(v, 2) for v in os.getloadavg()]},
    }, indent=1))


if __name__ == "__main__":
    main()
