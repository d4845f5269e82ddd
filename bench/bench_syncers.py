"""Syncer training throughput: steps/s per level for a config (prints JSON; not run by CI).

    .venv/bin/python bench/bench_syncers.py configs/syncers.yaml [--steps 10] [--levels 1,4]

Batches have the shapes training uses (``[B, 5, 60]`` motion, ``[B, C, 20, 26]`` audio with
C = 1 + negatives of that level) and random values: the cost of a step does not depend on
them. Levels with equal batch shapes cost the same (1–3 by default). The machine's matmul
throughput is measured in the same run (bench/calibrate.py), as these machines are shared.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import numpy as np

from bench.calibrate import matmul_gflops
from syncers.models import Syncer
from syncers.run import config as config_lib
from syncers.train import SyncersConfig, create_state, jit_train_step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--levels", default="1,4")
    args = parser.parse_args()
    config = config_lib.load(SyncersConfig, args.config)
    model = Syncer(config.model, 60, 26)
    step = jit_train_step(model, config.objective, config.optim, config.train.steps)
    rng = np.random.default_rng(0)
    out = {"config": args.config, "matmul_gflops": round(matmul_gflops(), 1), "levels": {}}
    n_params = None
    for level in (int(v) for v in args.levels.split(",")):
        s = config.sampling
        candidates = 1 + s.hard_negatives[level - 1] + s.other_negatives[level - 1]
        batch = {"motion": rng.standard_normal((s.batch_size, 5, 60)).astype(np.float32),
                 "audio": rng.standard_normal((s.batch_size, candidates, 20, 26))
                 .astype(np.float32)}
        state = create_state(config, level, 60, 26)
        n_params = sum(x.size for x in jax.tree.leaves(state.params["syncer"]))
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.steps):
            state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        rate = args.steps / (time.perf_counter() - start)
        out["levels"][str(level)] = {"candidates": candidates, "batch": s.batch_size,
                                     "steps_per_s": round(rate, 3),
                                     "first_step_s": round(compile_s, 1)}
    out["params_per_level"] = int(n_params)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
