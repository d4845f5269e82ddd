"""A generator's head motion against the recording on a prepared ``landmarks-v1`` dataset: how
far and how fast the head moves, not when (the mouth's timing is ``bench.against_recording``'s).

For every clip of the split, keypoints are generated from its recorded first-frame landmarks
and its speech (``motion.against_recording.dataset_source``: no photo, the dataset's crop; the
model's default options, ``motion.talking_head``), and the head is the mean position of the
rigid keypoints (``landmark_space.RIGID``: brows, eyes, nose). Per clip, in the crop's units
(its side = 2), generated and recorded: the *spread* (the standard deviation over frames of
the head's position, x and y averaged) and the *speed* (the mean distance it moves per second,
frame to frame). Prints one JSON object: the means over clips and their ratios (× = generated
over recorded).

    .venv/bin/python -m bench.head_motion --data DS [--model DIR] [--latency low] [--split test]
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from motion import talking_head
from motion.against_recording import dataset_source, read_recordings
from syncers.data.landmark_space import RIGID
from syncers.data.layout import FPS


def head_track(keypoints_Tx10x6: np.ndarray) -> np.ndarray:
    """``[T, 2]``: the mean position of the rigid keypoints."""
    return np.asarray(keypoints_Tx10x6, np.float64)[:, list(RIGID), :2].mean(axis=1)


def spread_and_speed(track_Tx2: np.ndarray) -> tuple[float, float]:
    """``(spread, speed)`` of a head track (module docstring)."""
    spread = float(track_Tx2.std(axis=0).mean())
    speed = float(np.linalg.norm(np.diff(track_Tx2, axis=0), axis=1).mean() * FPS)
    return spread, speed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=None, help="default: the bundled demo model")
    p.add_argument("--latency", choices=talking_head.LATENCIES, default=None)
    p.add_argument("--split", default="test")
    args = p.parse_args()
    model = talking_head.load(args.model, args.latency)
    options = talking_head.resolve(model, talking_head.GenerationOptions(blinks=False),
                                   draws=False)
    rows = []
    for recording in read_recordings(args.data, args.split):
        source = dataset_source(model, recording.landmarks[0])
        n_frames = len(recording.landmarks)
        generated = talking_head.keypoints(model, source, recording.samples, options)[:n_frames]
        rows.append((*spread_and_speed(head_track(generated)),
                     *spread_and_speed(head_track(recording.keypoints[:n_frames]))))
    mean = np.mean(rows, axis=0)
    print(json.dumps({
        "model": model.path, "split": args.split, "clips": len(rows),
        "spread": {"generated": round(mean[0], 4), "recorded": round(mean[2], 4),
                   "x": round(mean[0] / mean[2], 2)},
        "speed_per_s": {"generated": round(mean[1], 4), "recorded": round(mean[3], 4),
                        "x": round(mean[1] / mean[3], 2)}}, indent=1))


if __name__ == "__main__":
    main()
