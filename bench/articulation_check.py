"""Does a model's articulation open the mouth with the speech on held-out clips?

For every clip of a prepared ``landmarks-v1`` dataset's split (default test), the model's
articulation (``motion.articulation``, stored in its ``model.json``) is applied to the mean face
with the clip's corpus-matched features, and its inner-lip opening is compared with the clip's
speech envelope (the RMS of each 40 ms frame of the wav; Pearson r at the best lag of 0–3
frames, the mouth lagging) and with the recorded opening (the dlib landmarks' own, r at lag 0),
with the ratio of their spreads (``syncers.data.measures``: ``mouth_opening``, ``frame_rms``,
``envelope_r``, ``lagged_r``). Prints one JSON object:

    .venv/bin/python -m bench.articulation_check --data runs/real --model motion/assets/demo_model
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from motion import articulation, talking_head
from syncers.data import dataset, landmark_space, measures
from syncers.data.features import load_audio, match_features


def check(data: str, model_path: str, split: str = "test") -> dict:
    model = talking_head.load(model_path)
    fitted = model.articulation
    if fitted is None:
        raise SystemExit(f"{model_path}: the model has no articulation (msync train articulation)")
    quantiles = model.corpus_quantiles
    manifest = dataset.read_manifest(data)
    rows = []
    for clip in dataset.load_split(data, split, manifest):
        features = clip.audio_features if quantiles is None else \
            match_features(clip.audio_features, quantiles)
        offsets = articulation.predict(fitted, features)
        n_frames = len(offsets)
        rest = np.repeat(landmark_space.encode(landmark_space.mean_face())[None], n_frames, 0)
        opening = measures.mouth_opening(
            landmark_space.decode(articulation.apply(rest, offsets)))
        recorded = measures.mouth_opening(clip.landmarks[:n_frames])
        envelope = measures.frame_rms(load_audio(dataset.clip_path(data, split, clip.clip_id)
                                                 .with_suffix(".wav")), n_frames)
        rows.append((measures.envelope_r(opening, envelope),
                     measures.envelope_r(recorded, envelope),
                     measures.lagged_r(opening, recorded, [0])[0],
                     float(opening.std() / recorded.std())))
    rows = np.array(rows)
    return {"split": split, "clips": len(rows),
            "r_envelope": round(float(np.nanmean(rows[:, 0])), 3),
            "r_envelope_min": round(float(np.nanmin(rows[:, 0])), 3),
            "r_envelope_recorded": round(float(np.nanmean(rows[:, 1])), 3),
            "r_recorded": round(float(np.nanmean(rows[:, 2])), 3),
            "spread_ratio": round(float(rows[:, 3].mean()), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--split", default="test")
    args = p.parse_args()
    print(json.dumps(check(args.data, args.model, args.split)))


if __name__ == "__main__":
    main()
