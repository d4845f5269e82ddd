"""The recorded mouths of a prepared ``landmarks-v1`` dataset against their speech, by every
measure the project quotes, side by side (``syncers.data.measures``; docs/design.md, "Mouth and
speech measures").

Per clip of the split (``all``: every split; clips shorter than ``--clip-frames`` skipped and
the others cut to it when given, as ``msync evaluate`` does):
the mouth opening of the dlib landmarks and of the keypoints decoded back to landmarks (what
``msync evaluate`` measures), each correlated (``envelope_r``: best lag 0–3 frames) with the
speech envelope (the wav's RMS per frame, ``frame_rms``) and with the frame mel loudness of the
stored features (``frame_mel_loudness``); and the landmarks' opening over speech frames
(``speech_frames``, ``opening_summary``). Means over clips (clips with an undefined r skipped;
``clips_with_r_*`` says how many remain; ``r_*_sd`` is the spread of r across clips). Prints one
JSON object:

    .venv/bin/python -m bench.mouth_measures --data DS [--split all] [--clip-frames 50]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from syncers.data import dataset, measures
from syncers.data.features import load_audio
from syncers.data.layout import LANDMARK_SPACE

OPENINGS = ("landmarks", "keypoints")
LOUDNESS = ("envelope", "mel_loudness")


def clip_measures(clip: dataset.Clip, samples: np.ndarray, n_frames: int) -> dict[str, float]:
    """The measures of one clip's first ``n_frames`` frames and its 16 kHz ``samples [N]``."""
    openings = {"landmarks": measures.mouth_opening(clip.landmarks[:n_frames]),
                "keypoints": measures.keypoint_mouth_opening(clip.keypoints[:n_frames],
                                                             LANDMARK_SPACE)}
    envelope = measures.frame_rms(samples, n_frames)
    loudness = {"envelope": envelope,
                "mel_loudness": measures.frame_mel_loudness(clip.audio_features)[:n_frames]}
    out = {f"r_{o}_{a}": measures.envelope_r(openings[o], loudness[a])
           for o in OPENINGS for a in LOUDNESS}
    speech = measures.speech_frames(envelope)
    summary = measures.opening_summary(openings["landmarks"], speech)
    out.update({f"speech_{k}": v for k, v in summary.items()})
    out["speech_share"] = float(speech.mean())
    return out


def check(data: str, split: str = "all", clip_frames: int | None = None) -> dict:
    manifest = dataset.read_manifest(data)
    if manifest.keypoint_space != LANDMARK_SPACE:
        raise SystemExit(f"{data}: a {LANDMARK_SPACE} dataset is needed (one with landmarks)")
    rows = []
    for name in dataset.SPLITS if split == "all" else (split,):
        for clip in dataset.load_split(data, name, manifest):
            if clip_frames is not None and clip.n_frames < clip_frames:
                continue
            n_frames = clip.n_frames if clip_frames is None else clip_frames
            wav = dataset.clip_path(data, name, clip.clip_id).with_suffix(".wav")
            rows.append(clip_measures(clip, load_audio(wav), n_frames))
    if not rows:
        raise SystemExit(f"{data}: no clips in the {split} split")
    out = {"split": split, "clips": len(rows), "clip_frames": clip_frames}
    for key in rows[0]:
        values = np.array([row[key] for row in rows])
        out[key] = round(float(np.nanmean(values)), 3) if np.isfinite(values).any() else None
        if key.startswith("r_"):
            out[f"clips_with_{key}"] = int(np.isfinite(values).sum())
            out[f"{key}_sd"] = round(float(np.nanstd(values)), 3)   # across clips
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="all", help="a split, or 'all' (default)")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="cut each clip to this many frames (default: whole clips)")
    args = p.parse_args()
    print(json.dumps(check(args.data, args.split, args.clip_frames)))


if __name__ == "__main__":
    main()
