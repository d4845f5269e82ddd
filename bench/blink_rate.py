"""Blinks, eye opening and brow height of a prepared real corpus against loudness, and the
blink generator measured the same way (motion/blink.py; docs/design.md, "Blinks").

For every clip of DATA/{train,val,test}/*.npz (its ``landmarks [T, 68, 2]`` and ``meta`` fps)
longer than ``--min-seconds``: the blinks ``motion.blink.detect`` finds in its eye aspect ratio
(rate per minute, durations), the Pearson r of the per-frame loudness (RMS of the clip's wav)
with the eye aspect ratio and with the brows' height above the eyes (a squint or frown tied
to loudness gives r < 0), and the widest inner-lip opening (over the mouth's width). Then the
same detector on ``--generated`` minutes of ``motion.blink.generate``, with the least and
greatest rate it gives any video of more than 10 s (``motion.blink.rate_bounds``). Prints one
JSON object.

    python -m bench.blink_rate --data DATA [--min-seconds 10] [--generated 60]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np

from motion import blink
from syncers.data.features import load_audio


def loudness(wav: Path, n_frames: int) -> np.ndarray:
    """``[n_frames]`` RMS of the wav over each video frame."""
    samples = load_audio(wav)
    edges = np.linspace(0, samples.size, n_frames + 1).astype(int)
    return np.array([np.sqrt(np.mean(samples[a:b] ** 2)) if b > a else 0.0
                     for a, b in zip(edges[:-1], edges[1:])])


def brow_height(landmarks: np.ndarray) -> np.ndarray:
    """``[T]``: the brows' mean height above the upper lids, over the eye-corner distance."""
    brows = landmarks[:, 17:27, 1].mean(axis=1)
    lids = landmarks[:, [37, 38, 43, 44], 1].mean(axis=1)
    width = np.linalg.norm(landmarks[:, 45] - landmarks[:, 36], axis=-1)
    return (lids - brows) / width


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


def quartiles(values) -> list[float]:
    return [round(float(v), 3) for v in np.percentile(values, [25, 50, 75])] if len(values) else []


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--min-seconds", type=float, default=10.0)
    p.add_argument("--generated", type=float, default=60.0, help="minutes of generated blinks")
    args = p.parse_args()
    rates, durations, r_eye, r_brow, openings, seconds = [], [], [], [], [], 0.0
    clips = sorted(Path(args.data).glob("*/*.npz"))
    for path in clips:
        with np.load(path, allow_pickle=False) as data:
            landmarks = data["landmarks"].astype(np.float64)
            fps = float(json.loads(str(data["meta"]))["fps"])
        n = landmarks.shape[0]
        if n / fps < args.min_seconds:
            continue
        ear = blink.eye_aspect_ratio(landmarks)
        found = blink.detect(ear, fps)
        rates.append(len(found.onsets) / (n / fps) * 60.0)
        durations.extend(found.durations_s.tolist())
        seconds += n / fps
        width = np.linalg.norm(landmarks[:, 64] - landmarks[:, 60], axis=-1)
        openings.append(float(np.max(np.linalg.norm(landmarks[:, 66] - landmarks[:, 62],
                                                    axis=-1) / width)))
        wav = path.with_suffix(".wav")
        if wav.exists():
            loud = loudness(wav, n)
            r_eye.append(pearson(loud, ear))
            r_brow.append(pearson(loud, brow_height(landmarks)))
    n_generated = int(args.generated * 60 * 25)
    closure = blink.generate(jax.random.PRNGKey(0), n_generated, 25.0)
    generated = blink.detect(1.0 - 0.7 * closure, 25.0)   # an eye whose ratio closure lowers
    print(json.dumps({
        "benchmark": "blink_rate", "data": args.data, "clips": len(rates),
        "minutes": round(seconds / 60, 1),
        "corpus": {
            "blinks_per_min_quartiles": quartiles(rates),
            "blinks_per_min_pooled": round(len(durations) / max(seconds, 1e-9) * 60, 2),
            "duration_s_quartiles": quartiles(durations),
            "r_loudness_eye_aspect_quartiles": quartiles(r_eye),
            "r_loudness_brow_height_quartiles": quartiles(r_brow),
            "widest_inner_lip_opening_over_width_quartiles": quartiles(openings),
            "widest_inner_lip_opening_over_width_max": round(max(openings, default=0.0), 3)},
        "generated": {
            "minutes": args.generated,
            "blinks_per_min": round(len(generated.onsets) / args.generated, 2),
            "duration_s_quartiles": quartiles(generated.durations_s),
            # what every generated video of more than 10 s gets, whatever its key
            "blinks_per_min_bounds_over_10s": [
                round(r, 2) for r in blink.rate_bounds(blink.BlinkConfig(), 25.0)]},
    }, indent=1))


if __name__ == "__main__":
    main()
