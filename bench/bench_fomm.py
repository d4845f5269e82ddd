"""Benchmark: Flax FOMM (vox-256) vs the PyTorch re-statement of the official modules, on CPU.

Prints one JSON object: seconds per frame of the KPDetector and the generator at batch 1 and 8
for both frameworks (medians over alternating, side-by-side repetitions in one process, so
machine noise hits both alike), their ratios (torch / flax: > 1 means Flax is faster), the
Flax ``render`` path that reuses the source's encoder features, parameter counts, XLA's FLOP
count per frame, and a calibration of the machine (fp32 matmul GFLOP/s, numpy and JAX).

Usage: .venv/bin/python bench/bench_fomm.py [--reps 5] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import fomm_reference as ref
import torch
import yaml

from render.fomm.config import DEFAULT_CONFIG, load_config
from render.fomm.convert import convert_state_dicts
from render.fomm.networks import networks


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def calibrate(threads: int) -> dict:
    """fp32 matmul throughput (2·n³ FLOPs), best of 5, numpy and XLA."""
    n = 1024
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    best_np = min(_timed(lambda: a @ a) for _ in range(5))
    mm = jax.jit(lambda x: jnp.matmul(x, x, precision="highest"))
    x = jnp.asarray(a)
    mm(x).block_until_ready()
    best_jax = min(_timed(lambda: mm(x).block_until_ready()) for _ in range(5))
    ta = torch.from_numpy(a)
    best_torch = min(_timed(lambda: ta @ ta) for _ in range(5))
    flops = 2 * n ** 3
    return {"matmul_n": n, "numpy_gflops": flops / best_np / 1e9,
            "jax_gflops": flops / best_jax / 1e9, "torch_gflops": flops / best_torch / 1e9,
            "torch_threads": threads, "cpu_devices": jax.device_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(DEFAULT_CONFIG.read_text())["model_params"]
    kp_t, gen_t = ref.random_models(params, align_corners=True, seed=0)
    config = load_config(None)
    variables = convert_state_dicts({"kp_detector": kp_t.state_dict(),
                                     "generator": gen_t.state_dict()}, config)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    mods = networks(config)
    gen = mods["generator"]
    kp_fn = jax.jit(lambda v, x: mods["kp_detector"].apply(v, x))
    gen_fn = jax.jit(lambda v, s, kd, ks: gen.apply(v, s, kd, ks)["prediction"])
    enc_fn = jax.jit(lambda v, s: gen.apply(v, s, method=gen.encode))
    dec_fn = jax.jit(lambda v, s, f, ks, kd: gen.apply(v, s, f, ks, kd,
                                                         method=gen.decode)["prediction"])

    result = {"config": "vox-256", "image": 256, "reps": args.reps,
              "calibration": calibrate(args.threads),
              "params": {"kp_detector_flax": _count(variables["kp_detector"]["params"]),
                         "generator_flax": _count(variables["generator"]["params"]),
                         "kp_detector_torch": sum(p.numel() for p in kp_t.parameters()),
                         "generator_torch": sum(p.numel() for p in gen_t.parameters())}}
    rng = np.random.default_rng(0)
    for batch in [int(b) for b in args.batches.split(",")]:
        images = rng.random((batch, 256, 256, 3), dtype=np.float32)
        x = jnp.asarray(images)
        xt = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            kp = {k: v for k, v in kp_t(xt).items()}
        kp_j = {k: jnp.asarray(v.numpy()) for k, v in kp.items()}
        src1 = x[:1]
        kp_s1 = {k: v[:1] for k, v in kp_j.items()}
        features = enc_fn(variables["generator"], src1)
        src_t = xt[:1].expand(batch, -1, -1, -1)
        kp_s_t = {k: v[:1].expand(batch, *v.shape[1:]) for k, v in kp.items()}
        kp_s_b = {k: jnp.broadcast_to(v, (batch,) + v.shape[1:]) for k, v in kp_s1.items()}
        src_b = jnp.broadcast_to(src1, x.shape)
        runs = {
            "kp_detector_flax": lambda: kp_fn(variables["kp_detector"], x)["value"]
            .block_until_ready(),
            "generator_flax": lambda: gen_fn(variables["generator"], src_b, kp_j, kp_s_b)
            .block_until_ready(),
            "render_flax_cached_source": lambda: dec_fn(variables["generator"], src1, features,
                                                        kp_s1, kp_j).block_until_ready(),
        }
        torch_runs = {
            "kp_detector_torch": lambda: kp_t(xt),
            "generator_torch": lambda: gen_t(src_t, kp, kp_s_t),
        }
        compile_s = {name: _timed(fn) for name, fn in runs.items()}  # first call compiles
        times: dict[str, list[float]] = {name: [] for name in [*runs, *torch_runs]}
        with torch.no_grad():
            for fn in torch_runs.values():
                fn()  # warm-up
            for _ in range(args.reps):  # alternate side by side
                for pair in (("kp_detector_torch", "kp_detector_flax"),
                             ("generator_torch", "generator_flax", "render_flax_cached_source")):
                    for name in pair:
                        fn = runs.get(name) or torch_runs[name]
                        times[name].append(_timed(fn) / batch)
        per_frame = {name: statistics.median(t) for name, t in times.items()}
        result[f"batch_{batch}"] = {
            "seconds_per_frame": per_frame,
            "spread_per_frame": {n: [min(t), max(t)] for n, t in times.items()},
            "flax_first_call_seconds": compile_s,
            "speedup_torch_over_flax": {
                "kp_detector": per_frame["kp_detector_torch"] / per_frame["kp_detector_flax"],
                "generator": per_frame["generator_torch"] / per_frame["generator_flax"],
                "render_cached_source": per_frame["generator_torch"]
                / per_frame["render_flax_cached_source"]},
        }
        if batch == 1:
            result["gflop_per_frame_xla"] = {
                "kp_detector": _flops(kp_fn, variables["kp_detector"], x) / 1e9,
                "generator": _flops(gen_fn, variables["generator"], src_b, kp_j, kp_s_b) / 1e9}
            result["achieved_gflops_batch_1"] = {
                "generator_flax": result["gflop_per_frame_xla"]["generator"]
                / per_frame["generator_flax"],
                "generator_torch": result["gflop_per_frame_xla"]["generator"]
                / per_frame["generator_torch"]}
        print(json.dumps({f"batch_{batch}": result[f"batch_{batch}"]}), file=sys.stderr)
    print(json.dumps(result, indent=2))


def _count(tree) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def _flops(fn, *args) -> float:
    cost = fn.lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost.get("flops", float("nan")))


if __name__ == "__main__":
    main()
