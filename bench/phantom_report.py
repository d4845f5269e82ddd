"""Phantom corpus report: synthesis time and the measured speech/motion coupling; prints JSON.

    python bench/phantom_report.py --out /tmp/phantom --clips 200 --seconds 8

Writes three corpora (coupled, lips=0, head=0) with the same seed (so the same audio) and, for
each, measures from the written wav and keypoints: the pooled cross-correlation of mouth opening
(y lower lip − y upper lip) with the frame RMS, and of the head-pitch proxy (mean y of brows,
eyes, nose) with the frame energy, both band-passed to the nod band. Reports the peak r and its
lag (frames, positive = motion follows audio) and r at the design lags. Only the first corpus's
synthesis time is the headline figure; all three are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from syncers.data import dataset, measures
from syncers.data.features import load_audio
from syncers.data.phantom import corpus as phantom
from syncers.data.phantom.template import LOWER_LIP, RIGID, UPPER_LIP


def measure(root: Path) -> dict:
    params = phantom.PhantomParams()
    mouth, pitch, rms_all, energy = [], [], [], []
    manifest = dataset.read_manifest(root)
    for split in dataset.SPLITS:
        for info in manifest.clips(split):
            kp = dataset.read_clip(root, split, info.clip_id).keypoints
            rms = measures.frame_rms(load_audio(root / split / f"{info.clip_id}.wav"))
            mouth.append(kp[:, LOWER_LIP, 1] - kp[:, UPPER_LIP, 1])
            pitch.append(phantom.band_pass(kp[:, list(RIGID), 1].mean(axis=1), params.head_band))
            rms_all.append(rms)
            energy.append(phantom.band_pass(rms ** 2, params.head_band))
    out = {}
    for name, motion, audio, design in (("lips", mouth, rms_all, params.lip_lag),
                                        ("head", pitch, energy, params.head_lag)):
        lags, r = phantom.lagged_correlation(motion, audio, 12)
        at = int(round(design * 25))
        out[name] = {"peak_r": round(float(r.max()), 3),
                     "peak_lag_frames": int(lags[np.argmax(r)]),
                     "design_lag_frames": at, "r_at_design_lag": round(float(r[lags == at][0]), 3),
                     "max_abs_r": round(float(np.abs(r).max()), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = {"clips": args.clips, "seconds": args.seconds, "cpus": os.cpu_count(),
              "load_avg_1min": os.getloadavg()[0]}
    for name, coupling in (("coupled", {}), ("lips0", {"lips": 0.0}), ("head0", {"head": 0.0})):
        summary = phantom.synth_corpus(Path(args.out) / name, args.clips, args.seconds,
                                       args.seed, coupling, progress=False)
        report[name] = {"synth_wall_s": round(summary["wall_s"], 1),
                        **measure(Path(args.out) / name)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
