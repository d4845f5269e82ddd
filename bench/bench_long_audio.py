"""Memory and time of generating the keypoints of long speech, the path ``msync generate``
takes up to its renderer (``motion.generate``, "Long audio in bounded memory"): the audio
file's features (``syncers.data.features.file_features``: a long 16 kHz file is read a block
at a time), matched to the model's corpus (``match_features``, the bundled model's default),
and the rollout (``generate``, in pieces past ``CHUNK_FRAMES``).

The speech is the bundled ``motion/assets/speech.flac`` tiled to ``--minutes`` and written as
a 16 kHz 16-bit wav first (in a child process, so that making it costs this one no memory).
Prints one JSON object: minutes, frames, seconds per stage, frames/s and this process's peak
resident memory (``ru_maxrss``). Run it under ``/usr/bin/time -v`` for the figure the operating
system reports:

    /usr/bin/time -v python -m bench.bench_long_audio --minutes 60
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "motion" / "assets" / "speech.flac"
MODEL = ROOT / "motion" / "assets" / "demo_model"

_WRITE = """
import sys, numpy as np, soundfile
from syncers.data.features import load_audio
speech = load_audio(sys.argv[1])
n = int(float(sys.argv[3]) * 60 * 16000)
with soundfile.SoundFile(sys.argv[2], "w", 16000, 1, "PCM_16") as out:
    done = 0
    while done < n:
        piece = speech[:n - done]
        out.write(piece)
        done += piece.size
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    args = parser.parse_args()
    from motion.generate import generate
    from motion.saved_model import load_model
    from syncers.data.features import file_features, match_features

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run([sys.executable, "-c", _WRITE, str(SPEECH), str(wav), str(args.minutes)],
                       check=True, cwd=ROOT)
        times = {}
        started = time.perf_counter()
        model, info = load_model(MODEL)
        times["load_model"] = time.perf_counter() - started
        started = time.perf_counter()
        features, _ = file_features(wav)
        times["features"] = time.perf_counter() - started
    started = time.perf_counter()
    features = match_features(features, np.asarray(info["feature_stats"]["quantiles"]))
    times["match_features"] = time.perf_counter() - started
    x0 = np.zeros((10, 6), np.float32)
    started = time.perf_counter()
    keypoints = generate(model, x0, features)
    times["generate"] = time.perf_counter() - started
    assert np.all(np.isfinite(keypoints))
    print(json.dumps({
        "minutes": args.minutes, "frames": int(keypoints.shape[0]),
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "generate_frames_per_second": round(keypoints.shape[0] / times["generate"], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
