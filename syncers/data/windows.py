"""Fixed-length training windows and their augmentations (docs/design.md, "Generator losses
and training").

A :class:`WindowLoader` serves batches ``{"keypoints": [B, T, K, 6], "audio_features":
[B, 4T, F], "clip_index": [B], "start": [B]}`` whose keypoint and feature windows cover exactly
the same time (video frames ``start .. start+T`` ↔ features ``4·start .. 4·(start+T)``).
Batch ``n`` is a pure function of ``(seed, n)``, so a resumed run sees exactly the batches an
uninterrupted one would, with no iterator state to checkpoint.

Augmentations (each switchable): scale positions and jacobians by U(1−s, 1+s) about the image
centre, translate positions by U(−t, t), add U(−f, f) × (the window's feature range) to the
features, box-3 temporal smoothing of keypoints with probability p, and the keypoints of the
horizontally flipped video (when the clip has them) with probability q.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Sequence

import numpy as np
from scipy.ndimage import uniform_filter1d

from syncers.data.dataset import Clip
from syncers.data.layout import FEATURES_PER_FRAME
from syncers.run.config import non_negative, probability, ranged
from syncers.run.errors import InputError


@dataclasses.dataclass(frozen=True)
class Augment:
    """Augmentation switches and ranges (all off with ``enabled: false``)."""
    enabled: bool = True
    scale: float = ranged(0.1, ge=0, lt=1)    # ×U(0.9, 1.1): below 1, so never a flip or 0
    translate: float = ranged(0.16, ge=0, le=2)   # ±0.16 in normalised coordinates ([-1, 1])
    feature_offset: float = non_negative(0.1)   # ±10 % of the window's feature range
    smooth_prob: float = probability(0.5)     # box-3 keypoint smoothing
    flip_prob: float = probability(0.5)       # flipped-video keypoints, where present


class WindowLoader:
    """Random windows of ``window`` video frames from ``clips``; clips shorter are skipped."""

    def __init__(self, clips: Sequence[Clip], window: int, batch_size: int, seed: int,
                 augment: Augment | None = None):
        if window < 1 or batch_size < 1:
            raise ValueError(f"window and batch_size must be >= 1; got {window}, {batch_size}")
        self.clips = [c for c in clips if c.n_frames >= window]
        if not self.clips:
            longest = max((c.n_frames for c in clips), default=0)
            raise InputError(None, f"no clip has the {window} frames a training window needs "
                                   f"(longest: {longest})")
        self.window = window
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment or Augment(enabled=False)
        starts = np.array([c.n_frames - window + 1 for c in self.clips], np.float64)
        # Sampling clips in proportion to their window count makes every window equally likely.
        self._clip_probs = starts / starts.sum()

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """Batch number ``step``: the same arrays for the same ``(seed, step)``."""
        rng = np.random.default_rng([self.seed, step])
        # Windows are drawn before any augmentation, so switching an augmentation on or off
        # never changes which windows a batch holds.
        indices = rng.choice(len(self.clips), size=self.batch_size, p=self._clip_probs)
        starts = [int(rng.integers(0, self.clips[i].n_frames - self.window + 1)) for i in indices]
        keypoints, features = [], []
        for index, start in zip(indices, starts):
            kp, feat = self._window(self.clips[index], start, rng)
            keypoints.append(kp)
            features.append(feat)
        return {"keypoints": np.stack(keypoints), "audio_features": np.stack(features),
                "clip_index": indices.astype(np.int32), "start": np.asarray(starts, np.int32)}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        step = 0
        while True:
            yield self.batch(step)
            step += 1

    def _window(self, clip: Clip, start: int, rng: np.random.Generator):
        aug = self.augment
        stop = start + self.window
        source = clip.keypoints
        if aug.enabled and clip.keypoints_flipped is not None and rng.random() < aug.flip_prob:
            source = clip.keypoints_flipped
        keypoints = source[start:stop].astype(np.float32, copy=True)
        features = clip.audio_features[FEATURES_PER_FRAME * start:
                                       FEATURES_PER_FRAME * stop].astype(np.float32)
        if not aug.enabled:
            return keypoints, features
        # Draw every random number whatever the switches, so changing one augmentation's range
        # does not reshuffle the others'.
        scale = rng.uniform(1 - aug.scale, 1 + aug.scale)
        shift = rng.uniform(-aug.translate, aug.translate, size=2)
        offset = rng.uniform(-aug.feature_offset, aug.feature_offset)
        smooth = rng.random() < aug.smooth_prob
        keypoints[..., :6] *= scale            # positions about the centre, and jacobians
        keypoints[..., :2] += shift.astype(np.float32)
        if smooth:
            keypoints = uniform_filter1d(keypoints, size=3, axis=0, mode="nearest")
        features = features + np.float32(offset * float(features.max() - features.min()))
        return keypoints, features
