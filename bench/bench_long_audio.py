"""Memory and time of generating the keypoints of long speech, the path ``msync generate``
takes up to its renderer (``motion.talking_head.keypoints``; docs/design.md, "Long audio in
bounded memory"): the bundled model (``motion/assets/demo_model``) with its defaults — the
content mouth, features matched to its corpus, blinks — animating the bundled photograph, on a
16 kHz wav read as ``msync generate`` reads it (``syncers.data.features.open_speech``: a long
file a block at a time): its features block by block, what is said decoded block by block
(``syncers.data.content.speech_content``), the rollout in pieces past ``CHUNK_FRAMES``.

The speech is the bundled ``motion/assets/speech.flac`` tiled to ``--minutes`` and written as
a 16-bit wav at ``--rate`` (16 kHz by default) first (in a child process, so that making it
costs this one no memory).
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

_WRITE = """
import sys, numpy as np, soundfile
from syncers.data.features import load_audio
speech = load_audio(sys.argv[1])
rate = int(sys.argv[4])
if rate != 16000:
    import librosa
    speech = librosa.resample(speech, orig_sr=16000, target_sr=rate)
n = int(float(sys.argv[3]) * 60 * rate)
with soundfile.SoundFile(sys.argv[2], "w", rate, 1, "PCM_16") as out:
    done = 0
    while done < n:
        piece = speech[:n - done]
        out.write(piece)
        done += piece.size
"""


def write_speech(path: Path, minutes: float, rate: int = 16000) -> None:
    """``speech.flac`` tiled to ``minutes``, a ``rate`` Hz 16-bit wav at ``path`` (in a
    child)."""
    subprocess.run([sys.executable, "-c", _WRITE, str(SPEECH), str(path), str(minutes),
                    str(rate)], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--rate", type=int, default=16000,
                        help="the wav's sample rate (another than 16 kHz is resampled into a "
                             "temporary 16 kHz file a block at a time, as generate does)")
    parser.add_argument("--wav", help="write the tiled speech here and keep it (for timing "
                                      "msync generate --audio on the same file)")
    args = parser.parse_args()
    from motion import talking_head
    from motion.app.generate import demo_image
    from syncers.data.features import open_speech

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(args.wav) if args.wav else Path(tmp) / "speech.wav"
        write_speech(wav, args.minutes, args.rate)
        times = {}
        started = time.perf_counter()
        model = talking_head.load(None)
        options = talking_head.resolve(model, talking_head.GenerationOptions())
        times["load_model"] = time.perf_counter() - started
        started = time.perf_counter()
        source = talking_head.prepare(model, demo_image(), options)
        times["prepare_source"] = time.perf_counter() - started
        started = time.perf_counter()
        speech = open_speech(wav)
        times["open_speech"] = time.perf_counter() - started
        started = time.perf_counter()
        keypoints = talking_head.keypoints(model, source, speech, options)
        times["keypoints"] = time.perf_counter() - started
    assert np.all(np.isfinite(keypoints))
    print(json.dumps({
        "minutes": args.minutes, "rate": args.rate, "frames": int(keypoints.shape[0]),
        "mouth": options.mouth,
        "audio_normalization": options.audio_normalization,
        "speech_held": speech.samples is not None,
        "seconds": {k: round(v, 2) for k, v in times.items()},
        "keypoints_frames_per_second": round(keypoints.shape[0] / times["keypoints"], 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
