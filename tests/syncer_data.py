"""A tiny coupled audio/motion dataset in the msync format, for the syncer tests.

The "audio" is a smooth random envelope at 100 Hz spread over 26 bands plus noise; the motion
is 10 keypoints whose mouth opening follows the same envelope one video frame later (40 ms, the
phantom's lip lag). Small enough to write in milliseconds, coupled enough to learn in seconds.
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from syncers.data.dataset import write_clip, write_manifest

# configs/analyze.yaml's tiny counterpart (msync analyze, the page's Analyse tab): compile time
# dominates on a CPU; one scale keeps the run to seconds.
TINY_ANALYZE = {
    "model": {"embed_dim": 16, "frame_hidden": 8, "audio": {"width": 8, "depth": 0},
              "motion": {"width": 8, "depth": 0}},
    "objective": {"name": "triplet", "margin": 0.2},
    "sampling": {"batch_size": 8, "hard_negatives": [3, 3, 3, 3],
                 "other_negatives": [0, 0, 0, 0]},
    "optim": {"learning_rate": 1e-3, "warmup_steps": 2},
    "train": {"steps": 4, "checkpoint_every": 4, "log_every": 2, "levels": [1]},
}


def coupled_clip(rng: np.random.Generator, n_frames: int, lag: int = 1):
    envelope = gaussian_filter1d(rng.standard_normal(4 * n_frames + 4 * lag), 6.0)
    envelope = (envelope - envelope.mean()) / (envelope.std() + 1e-6)
    bands = np.linspace(1.0, 0.2, 26)
    audio = envelope[4 * lag:, None] * bands + 0.1 * rng.standard_normal((4 * n_frames, 26))
    video_env = envelope[:4 * n_frames].reshape(n_frames, 4).mean(axis=1)
    keypoints = np.zeros((n_frames, 10, 6))
    keypoints[:, :, 0] = rng.uniform(-0.5, 0.5, 10)
    keypoints[:, :, 1] = rng.uniform(-0.5, 0.5, 10)
    keypoints[:, :, 2] = keypoints[:, :, 5] = 1.0
    keypoints[:, 8, 1] += 0.05 * video_env                  # lower lip follows the envelope
    keypoints += 0.005 * rng.standard_normal(keypoints.shape)
    return keypoints.astype(np.float32), audio.astype(np.float32)


def make_dataset(root, n_train: int = 6, n_test: int = 3, n_frames: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    splits = {"train": [], "val": [], "test": []}
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            keypoints, audio = coupled_clip(rng, n_frames)
            clip_id = f"{split}{i:03d}"
            write_clip(root, split, clip_id, keypoints, audio, meta={"fps": 25})
            splits[split].append((clip_id, n_frames))
    write_manifest(root, splits, keypoint_space="test-v1", features={"kind": "test"})
    return root
