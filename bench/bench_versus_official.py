"""Benchmark: msync's generator (``motion.rollout``, paper size, ``configs/generator.yaml``)
against the paper's generator (LouisBearing/HMo-audio ``nets/networks.py``, ``DynamicalModel``),
side by side in one process on CPU, and where msync's batch-1 time goes.

The official code is imported from a checkout of HMo-audio (``--official DIR`` or
``MSYNC_OFFICIAL_CODE``), built at the paper's sizes with random weights exactly as
``bench/bench_official.py`` builds it (its ``.cuda()`` calls neutralised); it runs
``model(inpt, audio)`` under ``torch.no_grad()`` with ``--threads`` threads. msync runs a loaded
model's path (``motion.model.ready``: per-frame weights prepared once), jitted, after
compilation, as ``bench/bench_generator.py`` times it. Both make ``--frames`` frames from 3
observed ones at each batch size; repetitions alternate the two (machine noise hits both alike)
and medians are reported, with ``ratio = official_s / msync_s`` (> 1: msync is faster).

``batch1_profile``: batch-1 generation is bound by reading the per-frame weights (no matrix is
reused within a frame), so its time is set against the weight-streaming bound measured in the
same process (``bench.calibrate``): bytes each frame reads per part of G (the Transformer, the
branches, the keypoint encoder), the seconds streaming them would take at the measured bandwidth,
and the measured per-frame time; what is left over is everything else in the scan body (small
ops, the loop). ``ratio_at_bound`` is the speed-up over the official code that a frame costing
only its weight streaming would give: the ceiling for batch 1 at float32 on this host.

Prints one JSON object. Usage: ``python -m bench.bench_versus_official --official
PATH/TO/HMo-audio [--batches 1,32] [--frames 120] [--reps 3] [--threads 2]``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import torch

from bench.bench_generator import _inputs, per_frame_bytes
from bench.bench_official import _inputs as official_inputs
from bench.bench_official import build_official, official_model_class
from bench.calibrate import calibrate
from motion.config import GeneratorRunConfig
from motion.generator import count_params, init_params
from motion.model import GeneratorModel, ready
from motion.rollout import rollout
from syncers.run.config import load


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def part_bytes(params) -> dict:
    """Bytes of parameters one generated frame reads, per part of G (``per_frame_bytes``'s
    total: the FPN and the branches' audio weights run once per sequence)."""
    head = {k: v for k, v in params["head"].items() if k != "w_audio"}
    return {"temporal": 4 * count_params(params["temporal"]), "branches": 4 * count_params(head),
            "encoder": 4 * count_params(params["encoder"])}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", default=os.environ.get("MSYNC_OFFICIAL_CODE"),
                        help="a checkout of LouisBearing/HMo-audio (or $MSYNC_OFFICIAL_CODE)")
    parser.add_argument("--config", default="configs/generator.yaml")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.official:
        parser.error("pass --official PATH (or set MSYNC_OFFICIAL_CODE)")
    torch.set_num_threads(args.threads)
    official = build_official(official_model_class(args.official))
    config = load(GeneratorRunConfig, args.config).model
    key = jax.random.PRNGKey(0)
    params = jax.jit(init_params, static_argnums=0)(config, key)
    weights = ready(GeneratorModel(params, config)).frame_weights
    n_frames = args.frames

    @jax.jit
    def generate(params, weights, x_obs, audio):
        return rollout(params, x_obs, audio, n_frames, config=config, weights=weights)

    result = {"config": args.config, "frames": n_frames, "reps": args.reps,
              "torch_threads": args.threads, "torch": torch.__version__,
              "jax": jax.__version__,
              "parameters": {"msync": count_params(params),
                             "official": sum(p.numel() for p in official.parameters())},
              "calibration_before": calibrate(), "batches": {}}
    for batch in (int(b) for b in args.batches.split(",")):
        x_obs, audio = _inputs(config, batch, n_frames, jax.random.fold_in(key, batch))
        inpt, official_audio = (torch.from_numpy(a) for a in official_inputs(batch, n_frames,
                                                                            seed=batch))
        compile_s = _timed(lambda: jax.block_until_ready(generate(params, weights, x_obs,
                                                                  audio)))
        times = {"official": [], "msync": []}
        for _ in range(args.reps):
            with torch.no_grad():
                times["official"].append(_timed(lambda: official(inpt, official_audio)))
            times["msync"].append(_timed(lambda: jax.block_until_ready(
                generate(params, weights, x_obs, audio))))
        official_s, msync_s = (statistics.median(times[k]) for k in ("official", "msync"))
        result["batches"][str(batch)] = {
            "official_frames_per_s": round(batch * n_frames / official_s, 1),
            "msync_frames_per_s": round(batch * n_frames / msync_s, 1),
            "ratio": round(official_s / msync_s, 2), "msync_first_call_s": round(compile_s, 2),
            "all_s": {k: [round(t, 4) for t in v] for k, v in times.items()}}
        print(json.dumps({"batch": batch, **result["batches"][str(batch)]}), file=sys.stderr)
    result["calibration_after"] = calibrate()
    result["ratios"] = {b: r["ratio"] for b, r in result["batches"].items()}
    if "1" in result["batches"]:
        stream = max(result["calibration_before"]["stream_gbps"],
                     result["calibration_after"]["stream_gbps"]) * 1e9
        per_frame_s = 1 / result["batches"]["1"]["msync_frames_per_s"]
        parts = part_bytes(params)
        streaming_s = {k: v / stream for k, v in parts.items()}
        result["batch1_profile"] = {
            "bytes_per_frame": per_frame_bytes(params), "bytes_per_frame_by_part": parts,
            "stream_gbps_bound": round(stream / 1e9, 2),
            "measured_ms_per_frame": round(1e3 * per_frame_s, 3),
            "streaming_ms_per_frame_by_part": {k: round(1e3 * v, 3)
                                               for k, v in streaming_s.items()},
            "rest_ms_per_frame": round(1e3 * (per_frame_s - sum(streaming_s.values())), 3),
            "fraction_of_streaming_bound": round(sum(streaming_s.values()) / per_frame_s, 3),
            "frames_per_s_at_bound": round(stream / per_frame_bytes(params), 1),
            # the most any rollout that reads its float32 weights once per frame can reach
            # against the official code on this host: below 8, batch 1 is bandwidth-bound
            "ratio_at_bound": round(stream / per_frame_bytes(params)
                                    / result["batches"]["1"]["official_frames_per_s"], 2)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
