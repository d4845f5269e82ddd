"""Benchmark of streaming generation (motion/stream.py) in real time: speech pushed in 40 ms
chunks as a microphone gives them, with the bundled model and its default weight-free renderer.

Prints one JSON object: frames out, sustained frames/s over the run and the capacity (frames
per second of compute), whether a backlog grew (how late each chunk was pushed against when it
was spoken), per-chunk compute p50/p95/max, frame latency p50/p95/max (a frame going out minus
the moment its audio's last sample was spoken; frames flushed at the end are not counted), the
latency the look-ahead implies (docs/design.md, "Streaming and the web page") and the targets
(latency p95 ≤ look-ahead + 120 ms, ≥ 25 frames/s with no growing backlog), with the machine's
load beside them (/proc/loadavg before and after: these 2 cores are shared).

    .venv/bin/python bench/bench_stream.py [--seconds 60] [--chunk-ms 40] [--model RUN]
                                           [--latency full|low]
                                           [--mouth content|loudness] [--image IMG]
                                           [--audio WAV ...]

``--latency low``: the bundled low-latency model (``motion.talking_head.load``); its targets
are the same rule (look-ahead + 120 ms: 327.5 ms) under the 400 ms asked of it.

Speech: the real recordings in ../shared/data/real (concatenated and repeated to --seconds),
else a phantom utterance; the face: happy.png there, else scikit-image's astronaut.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from motion import talking_head
from motion.app import generate as app_gen
from motion.app import stream as app_stream
from motion.talking_head import GenerationOptions
from syncers.data import face
from syncers.data.features import load_audio
from syncers.data.layout import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from syncers.data.phantom import audio as phantom_audio

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _stats(values) -> dict:
    values = np.asarray(values, np.float64) * 1e3
    if values.size == 0:
        return {}
    return {"p50": round(float(np.percentile(values, 50)), 1),
            "p95": round(float(np.percentile(values, 95)), 1),
            "max": round(float(values.max()), 1)}


def speech(paths: list[str], seconds: float) -> tuple[np.ndarray, str]:
    if not paths:
        paths = [os.fspath(REAL / n) for n in ("RD_Radio31_000.wav", "chinese_poem1.wav",
                                                "imagine.wav") if (REAL / n).is_file()]
    if not paths:
        return phantom_audio.utterance(seconds), "phantom speech (no real recordings found)"
    joined = np.concatenate([load_audio(p) for p in paths])
    repeats = int(np.ceil(seconds * SAMPLE_RATE / joined.size))
    return np.tile(joined, repeats)[:int(seconds * SAMPLE_RATE)], \
        ", ".join(Path(p).name for p in paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--chunk-ms", type=float, default=40.0)
    parser.add_argument("--model")
    parser.add_argument("--latency", choices=("full", "low"))
    parser.add_argument("--mouth", help="content or loudness (default: the model's)")
    parser.add_argument("--image")
    parser.add_argument("--audio", nargs="*", default=[])
    args = parser.parse_args()

    image_path = args.image or (os.fspath(REAL / "happy.png") if (REAL / "happy.png").is_file()
                                else None)
    image = face.load_image(image_path) if image_path else app_gen.demo_image()
    samples, source = speech(args.audio, args.seconds)
    load_before = _loadavg()
    built = time.perf_counter()
    model = talking_head.load(args.model, args.latency)
    options = talking_head.resolve(model, GenerationOptions(mouth=args.mouth))
    streamer = app_stream.build_streamer(model, image, options, image_path)
    build_s = time.perf_counter() - built

    chunk = max(1, round(args.chunk_ms * SAMPLE_RATE / 1000))
    spoken_at = {}                       # samples in → when the last of them was spoken
    compute, late, latency = [], [], []
    n_frames = 0
    first_out = last_out = None
    started = time.perf_counter()
    for part, spoken in app_stream.file_chunks(samples, chunk):
        pushed = time.perf_counter()
        late.append(pushed - spoken)
        frames = streamer.push(part)
        done = time.perf_counter()
        compute.append(done - pushed)
        spoken_at[streamer.samples_in] = spoken
        for frame in frames:
            end = SAMPLES_PER_FRAME * (frame.index + 1)
            when = min(t for n, t in spoken_at.items() if n >= end)
            latency.append(done - when)
        if frames:
            n_frames += len(frames)
            first_out = first_out or done
            last_out = done
        for n in [n for n in spoken_at if n < streamer.samples_in - 60 * SAMPLES_PER_FRAME]:
            del spoken_at[n]                 # keep the lookup short: frames trail by < 60
    wall = time.perf_counter() - started
    flushed = len(streamer.close())
    load_after = _loadavg()

    lookahead_ms = streamer.delay_frames * 1000 / FPS + 7.5
    tail = max(1, len(late) // 10)
    sustained = (n_frames - 1) / (last_out - first_out) if n_frames > 1 else 0.0
    result = {
        "seconds": round(samples.size / SAMPLE_RATE, 2), "speech": source,
        "chunk_ms": args.chunk_ms, "model": model.path, "latency": args.latency or "full",
        "keypoint_space": model.keypoint_space, "renderer": options.renderer,
        "mouth": options.mouth,
        "image": image_path or "astronaut (bundled)",
        "lookahead_frames": streamer.delay_frames,
        "lookahead_ms": round(lookahead_ms, 1),
        "frames_streamed": n_frames, "frames_flushed_at_close": flushed,
        "sustained_fps": round(sustained, 2),
        "capacity_fps": round(n_frames / max(sum(compute), 1e-9), 1),
        "backlog_ms": {"first_tenth_p50": round(float(np.median(late[:tail])) * 1e3, 1),
                       "last_tenth_p50": round(float(np.median(late[-tail:])) * 1e3, 1),
                       "max": round(max(late) * 1e3, 1)},
        "chunk_compute_ms": _stats(compute),
        "frame_latency_ms": _stats(latency),
        "wall_s": round(wall, 2), "build_and_compile_s": round(build_s, 2),
        "targets": {"frame_latency_p95_ms_at_most": round(lookahead_ms + 120, 1),
                    "sustained_fps_at_least": 25.0},
        "loadavg_before": load_before, "loadavg_after": load_after,
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
    }
    result["meets"] = {
        "latency": result["frame_latency_ms"].get("p95", 1e9)
        <= result["targets"]["frame_latency_p95_ms_at_most"],
        "throughput": sustained >= 25.0 * 0.98
        and result["backlog_ms"]["last_tenth_p50"] < 2 * args.chunk_ms}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
