"""Build the ``landmarks-v1`` mean face (``syncers/data/landmarks_v1_mean_face.json``) from the
training speakers of a folder of real videos: a few frames per video, dlib landmarks on the
256×256 crop, their generalised Procrustes mean (``syncers.data.landmark_space.build_mean_face``).

    python bench/build_mean_face.py --videos ../shared/data/real-corpus/videos \\
        --speakers ../shared/data/real-corpus/MANIFEST.tsv [--out FILE]

Prints JSON: frames used, videos used and skipped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from syncers.data import face, landmark_space
from syncers.data import landmarks as landmarker
from syncers.data import video as video_io
from syncers.data.layout import LANDMARK_SPACE
from syncers.data.prepare import find_videos, read_speakers, split_of
from syncers.run.errors import InputError

FRAMES_PER_VIDEO = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", required=True)
    parser.add_argument("--speakers")
    parser.add_argument("--out", default=str(landmark_space.MEAN_FACE_FILE))
    args = parser.parse_args()
    root = Path(args.videos)
    table = read_speakers(args.speakers) if args.speakers else None
    faces, used, skipped = [], [], 0
    for video in find_videos(root):
        if split_of(video, "speaker", root, table) != "train":
            continue
        try:
            frames = video_io.read_video(video)
        except InputError:
            skipped += 1
            continue
        picks = frames[np.linspace(0, len(frames) - 1, FRAMES_PER_VIDEO + 2)[1:-1].astype(int)]
        boxes = [b[0] for b in map(landmarker.detect_faces, picks) if b]
        if not boxes:
            skipped += 1
            continue
        crops = face.crop_frames(picks, tuple(np.median(boxes, axis=0)))
        for crop in crops:
            found = landmarker.detect_faces(crop, upsample=0)
            if found:
                faces.append(landmarker.to_crop_coords(landmarker.landmarks(crop, found[0]),
                                                       crop.shape[0]))
        used.append(video.name)
    mean = landmark_space.build_mean_face(np.stack(faces))
    Path(args.out).write_text(json.dumps({
        "keypoint_space": LANDMARK_SPACE,
        "about": "generalised Procrustes mean of dlib's 68 landmarks on 256x256 face crops, "
                 "normalised coordinates (x right, y down, -1/+1 = first/last pixel centre); "
                 f"{len(faces)} frames of {len(used)} training videos of the real corpus "
                 "(bench/build_mean_face.py)",
        "landmarks": np.round(mean, 5).tolist()}, indent=0))
    print(json.dumps({"frames": len(faces), "videos": len(used), "skipped": skipped,
                      "out": args.out}))


if __name__ == "__main__":
    main()
