"""Folds, cracks and blinks of a generated video, from its photo and its keypoints
(``msync generate --keypoints-out``), rendered by the mesh renderer as ``msync generate`` draws
them (render/mesh.py ``fold_measure``; motion/blink.py ``detect``; docs/design.md, "Mesh
renderer", "Blinks").

Prints one JSON object: per-frame fold measure summarised (smallest Jacobian determinant,
frames below 0.1, frames with a reversed triangle or a crack), the blinks in the keypoints'
eyes (per minute, durations), and with ``--sheet PNG`` writes a contact sheet: the 10 loudest
frames (RMS of ``--audio``) over the 10 of widest head turn (the eye line's angle from the
photo's, plus the nose's sideways shift).

    python -m bench.mesh_folds --keypoints NPZ --audio FILE [--image IMG] [--sheet PNG]
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from PIL import Image

from motion import blink
from motion.app.generate import demo_image
from motion.source import source_keypoints, source_landmarks
from motion.talking_head import DEFAULT_CROP_SCALE
from render import mesh
from syncers.data import face, landmark_space
from syncers.data.features import load_audio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keypoints", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--image", help="the photo (default: the bundled astronaut)")
    p.add_argument("--sheet", help="write the contact sheet here")
    args = p.parse_args()
    image = face.load_image(args.image) if args.image else demo_image()
    crop = face.crop(image, size=256, margin=(DEFAULT_CROP_SCALE - 1) / 2, path=args.image)
    points = source_landmarks(crop)
    x0_model, to_image = source_keypoints(crop, None, "landmarks-v1", points)
    x0 = np.asarray(to_image(x0_model), np.float32)
    with np.load(args.keypoints, allow_pickle=False) as data:
        kp = data["keypoints"].astype(np.float32)
        fps = float(data["fps"])
    source = mesh.prepare(crop.image, points)
    folds = mesh.fold_measure(source, x0, kp)
    found = blink.detect(blink.eye_aspect_ratio(landmark_space.decode(kp)), fps)
    minutes = kp.shape[0] / fps / 60
    samples = load_audio(args.audio)
    edges = np.linspace(0, samples.size, kp.shape[0] + 1).astype(int)
    rms = np.array([np.sqrt(np.mean(samples[a:b] ** 2)) if b > a else 0.0
                    for a, b in zip(edges[:-1], edges[1:])])
    eyes, eyes0 = kp[:, 3, :2] - kp[:, 2, :2], x0[3, :2] - x0[2, :2]
    angle = np.degrees(np.arctan2(eyes[:, 1], eyes[:, 0]) - np.arctan2(eyes0[1], eyes0[0]))
    turn = np.abs(angle) + 100 * np.abs(kp[:, 4, 0] - x0[4, 0])
    loud, wide = np.argsort(rms)[::-1][:10], np.argsort(turn)[::-1][:10]
    print(json.dumps({
        "benchmark": "mesh_folds", "keypoints": args.keypoints, "frames": int(kp.shape[0]),
        "min_jacobian": round(float(folds.min_jacobian.min()), 4),
        "frames_jacobian_below_0.1": int((folds.min_jacobian < 0.1).sum()),
        "frames_folded": int((folds.folded > 0).sum()),
        "frames_cracked": int((folds.uncovered > 0).sum()),
        "blinks_per_min": round(len(found.onsets) / minutes, 1),
        "blink_durations_s": [round(float(d), 2) for d in found.durations_s],
        "max_head_roll_deg": round(float(np.abs(angle).max()), 1),
        "loudest_frames": loud.tolist(), "widest_turn_frames": wide.tolist()}))
    if args.sheet:
        frames = mesh.render(source, x0, kp[np.concatenate([loud, wide])])
        rows = [np.concatenate(list(frames[r * 10:(r + 1) * 10]), axis=1) for r in range(2)]
        Image.fromarray((np.concatenate(rows, axis=0) * 255).round().astype(np.uint8)).save(
            args.sheet)


if __name__ == "__main__":
    main()
