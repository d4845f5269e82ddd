"""Benchmark of the speech content features (syncers/data/content.py): how much faster than real
time all-phone decoding runs, offline and streamed in 40 ms chunks, and whether a long stream
slows down (its best path is read back from the utterance's start on every frame).

Prints one JSON object: the audio's length, the offline speed (× real time, with the default
look-ahead and with ``lookahead=None``), the streamed speed per quarter of the audio (a falling
number means a push costs more as the stream grows), per-chunk compute p50/p95/max in ms, and
/proc/loadavg before and after (these cores are shared).

    .venv/bin/python bench/bench_content.py [--seconds 60] [--audio WAV ...]

Speech: the given files (default: the bundled motion/assets/speech.flac), concatenated and
repeated to --seconds.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from syncers.data import content
from syncers.data.features import load_audio
from syncers.data.layout import SAMPLE_RATE, SAMPLES_PER_FRAME

SPEECH = Path(__file__).resolve().parents[1] / "motion" / "assets" / "speech.flac"


def _loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--audio", nargs="*", default=[str(SPEECH)])
    args = parser.parse_args()
    speech = np.concatenate([load_audio(path) for path in args.audio])
    n_samples = int(args.seconds * SAMPLE_RATE)
    samples = np.resize(speech, n_samples).astype(np.float32)
    seconds = n_samples / SAMPLE_RATE
    load_before = _loadavg()
    report = {"seconds": round(seconds, 2), "lookahead_frames": content.DEFAULT_LOOKAHEAD}
    for name, lookahead in (("offline_x_realtime", content.DEFAULT_LOOKAHEAD),
                            ("offline_final_path_x_realtime", None)):
        start = time.perf_counter()
        content.content_features(samples, lookahead)
        report[name] = round(seconds / (time.perf_counter() - start), 2)
    stream = content.ContentStream()
    chunk_ms = []
    for start in range(0, n_samples, SAMPLES_PER_FRAME):
        tic = time.perf_counter()
        stream.push(samples[start:start + SAMPLES_PER_FRAME])
        chunk_ms.append(1e3 * (time.perf_counter() - tic))
    stream.close()
    chunk_ms = np.array(chunk_ms)
    quarters = np.array_split(chunk_ms, 4)
    report["stream_x_realtime_by_quarter"] = [
        round(len(q) * SAMPLES_PER_FRAME / SAMPLE_RATE / (q.sum() / 1e3), 2) for q in quarters]
    report["chunk_ms"] = {"p50": round(float(np.percentile(chunk_ms, 50)), 2),
                          "p95": round(float(np.percentile(chunk_ms, 95)), 2),
                          "max": round(float(chunk_ms.max()), 2)}
    report["loadavg"] = {"before": load_before, "after": _loadavg()}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
