"""Benchmark: the released MS-Sync generator in msync (``motion.official``) against the official
PyTorch code (LouisBearing/HMo-audio ``nets/networks.py``, ``DynamicalModel``), on CPU.

The official code is imported from a checkout of HMo-audio: ``--official DIR`` or the
environment variable ``MSYNC_OFFICIAL_CODE``. Its hard-coded ``.cuda()`` calls are neutralised
in this process (``torch.Tensor.cuda`` returns the tensor itself); nothing else of it changes.
The official class is built at the paper's sizes (41.7 M parameters) with random weights (norm
parameters perturbed), its state dict converted by msync's converter, and both generate the same
frames: ``model(inpt, audio)`` under ``torch.no_grad()`` (the warm-up on ``obs_len`` frames
then ``--frames − 1`` rolled out, ``--frames`` output frames) and msync's jitted
``motion.official.rollout.forward`` after compilation, at each batch size. Repetitions alternate
the two in one process (machine noise hits both alike) and the medians are reported with
``ratio = official / msync`` (> 1: msync is faster), the outputs' max |Δ|, msync's compile
time and an fp32 matmul calibration of the machine.

Usage: python bench/bench_official.py --official PATH/TO/HMo-audio [--batches 1,32]
       [--frames 120] [--reps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import torch

from bench.calibrate import matmul_gflops
from motion.official.config import PAPER
from motion.official.convert import convert_state_dict
from motion.official.rollout import forward


def official_model_class(directory: str):
    """``DynamicalModel`` from an HMo-audio checkout, with ``.cuda()`` made a no-op."""
    nets = Path(directory) / "nets" / "networks.py"
    if not nets.is_file():
        raise SystemExit(f"bench_official: {nets} not found: pass --official (or set "
                         "MSYNC_OFFICIAL_CODE) to a checkout of LouisBearing/HMo-audio")
    torch.Tensor.cuda = lambda self, *args, **kwargs: self       # the official code's 23 .cuda()
    sys.path.insert(0, str(Path(directory).resolve()))
    return importlib.import_module("nets.networks").DynamicalModel


def build_official(model_class, seed: int = 0):
    """The official model at the paper's sizes, eval mode, random weights with every norm's
    affine parameters moved away from (1, 0)."""
    config = type("Config", (), dataclasses.asdict(PAPER))()
    torch.manual_seed(seed)
    model = model_class(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm)):
                n = module.weight.shape[0]
                module.weight.copy_(1 + 0.3 * torch.randn(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def calibrate() -> dict:
    """fp32 matmul throughput (2·n³ FLOPs), best of 5, XLA (``bench.calibrate``) and torch."""
    n = 1024
    ta = torch.from_numpy(np.random.default_rng(0).random((n, n), dtype=np.float32))
    best_torch = min(_timed(lambda: ta @ ta) for _ in range(5))
    return {"matmul_n": n, "jax_gflops": matmul_gflops(n, repeats=5),
            "torch_gflops": 2 * n ** 3 / best_torch / 1e9}


def _inputs(batch: int, frames: int, seed: int):
    rng = np.random.default_rng(seed)
    kp = np.concatenate([rng.uniform(-0.6, 0.6, (batch, 1, 10, 2)),
                         np.array([1, 0, 0, 1]) + 0.1 * rng.standard_normal((batch, 1, 10, 4))],
                        axis=-1)
    inpt = np.repeat(kp, PAPER.obs_len, axis=1).astype(np.float32)
    audio = (-8 + 3 * rng.standard_normal((batch, 4 * (PAPER.obs_len + frames), 26))
             ).astype(np.float32)
    return inpt, audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", default=os.environ.get("MSYNC_OFFICIAL_CODE"),
                        help="a checkout of LouisBearing/HMo-audio (or $MSYNC_OFFICIAL_CODE)")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.official:
        parser.error("pass --official PATH (or set MSYNC_OFFICIAL_CODE)")
    torch.set_num_threads(args.threads)
    official = build_official(official_model_class(args.official))
    state = {k: v.numpy() for k, v in official.state_dict().items()}
    params = jax.tree.map(jnp.asarray, convert_state_dict(state, PAPER))
    run = jax.jit(functools.partial(forward, config=PAPER))

    result = {"config": dataclasses.asdict(PAPER),
              "parameters": sum(p.numel() for p in official.parameters()),
              "frames": args.frames, "reps": args.reps, "torch_threads": args.threads,
              "torch": torch.__version__, "jax": jax.__version__,
              "calibration_before": calibrate(), "batches": {}}
    for batch in (int(b) for b in args.batches.split(",")):
        inpt, audio = _inputs(batch, args.frames, seed=batch)
        compile_s = _timed(lambda: run.lower(params, inpt, audio).compile())
        jax.block_until_ready(run(params, inpt, audio))
        times = {"official": [], "msync": []}
        outputs = {}
        for _ in range(args.reps):
            with torch.no_grad():
                times["official"].append(_timed(lambda: outputs.__setitem__(
                    "official", official(torch.from_numpy(inpt), torch.from_numpy(audio))[1])))
            times["msync"].append(_timed(lambda: outputs.__setitem__(
                "msync", jax.block_until_ready(run(params, inpt, audio)[1]))))
        official_s, msync_s = (statistics.median(times[k]) for k in ("official", "msync"))
        result["batches"][str(batch)] = {
            "official_s": official_s, "msync_s": msync_s, "ratio": official_s / msync_s,
            "official_ms_per_frame": 1e3 * official_s / args.frames,
            "msync_ms_per_frame": 1e3 * msync_s / args.frames,
            "msync_compile_s": compile_s, "all_s": times,
            "max_abs_diff": float(np.abs(np.asarray(outputs["msync"])
                                         - outputs["official"].numpy()).max())}
        print(json.dumps({"batch": batch, **result["batches"][str(batch)]}), file=sys.stderr)
    result["calibration_after"] = calibrate()
    result["ratios"] = {b: r["ratio"] for b, r in result["batches"].items()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
