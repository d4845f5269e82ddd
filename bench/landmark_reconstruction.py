"""Reconstruction error of the ``landmarks-v1`` keypoint space on a prepared dataset: the 68
landmarks rebuilt from the 10 keypoints by the first-order model (``landmark_space.decode``)
against the tracked ones, in % of the inter-ocular distance, per split and per group.

    python bench/landmark_reconstruction.py --data DATASET

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from syncers.data import landmark_space, measures
from syncers.data.dataset import load_split, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    manifest = read_manifest(args.data)
    out = {"data": args.data}
    for split in ("train", "val", "test"):
        errors = []
        for clip in load_split(manifest.root, split, manifest):
            if clip.landmarks is None:
                continue
            rebuilt = landmark_space.decode(landmark_space.encode(clip.landmarks))
            gap = np.linalg.norm(rebuilt - clip.landmarks, axis=-1)          # [T, 68]
            errors.append(100 * gap / measures.eye_distance(clip.landmarks)[:, None])
        if not errors:
            continue
        errors = np.concatenate(errors)
        out[split] = {"frames": len(errors), "mean_pct": round(float(errors.mean()), 3),
                      "p95_pct": round(float(np.percentile(errors, 95)), 3),
                      "by_group_mean_pct": {
                          name: round(float(errors[:, list(group)].mean()), 3)
                          for name, group in zip(landmark_space.GROUP_NAMES,
                                                 landmark_space.GROUPS)}}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
