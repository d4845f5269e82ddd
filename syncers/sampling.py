"""Training batches for the syncer pyramid: positives and negatives per level
(docs/design.md, "Syncers").

Each clip's motion ``[T, M]`` and audio features ``[4T, F]`` are turned into temporal pyramids
(paper eq. 5) once, when the :class:`Sampler` is built. A batch at level i holds B motion
segments ``[B, 5, M]`` and, per segment, C = 1 + N_hard + N_other audio candidates
``[B, C, 20, F]``: candidate 0 is the audio of the same time (the positive), then hard
negatives — the same clip's audio centred at least ``min_shift`` level frames away (segment t
of a level is centred on its frame t) — then audio of other clips. By default levels 1–3 use
12 hard negatives and level 4 48 other-clip negatives (docs/design.md, "Syncers").

Only whole windows are sampled: a centre is valid when its motion window (5 level frames) and
its audio window (20 level features, ``pyramid.audio_centers``) both lie inside the clip.
Batch ``step`` of ``level`` is a pure function of ``(seed, level, step)`` — NumPy's generator
seeded with that triple — so a resumed run draws exactly the batches of an uninterrupted one
and the sampler has no state to checkpoint beyond the step.
"""
from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import numpy as np

from syncers.data.dataset import Clip
from syncers.data.layout import FEATURES_PER_FRAME
from syncers.data.pyramid import (
    AUDIO_SEGMENT_FRAMES,
    SEGMENT_FRAMES,
    audio_center_offset,
    temporal_pyramid,
)
from syncers.run.config import count, ranged
from syncers.run.errors import InputError


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What motion the syncers read, and how the pyramid is built."""
    motion: Literal["keypoints", "landmarks"] = "keypoints"
    points: tuple[int, ...] = ranged((), ge=0)   # subset of keypoints/landmarks; () = all
    pyramid_kind: Literal["box", "gaussian"] = "box"
    pyramid_k: int = count(3)             # 2k+1 taps (eq. 5)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Batch size and negatives per level (tuples indexed by level − 1)."""
    batch_size: int = count(64)
    hard_negatives: tuple[int, ...] = ranged((12, 12, 12, 0), ge=0)
    other_negatives: tuple[int, ...] = ranged((0, 0, 0, 48), ge=0)
    min_shift: int = count(2)             # level frames between a hard negative and the positive


def motion_features(clip: Clip, config: DataConfig) -> np.ndarray:
    """The motion a syncer reads from a clip: ``[T, P·D]`` float32 (keypoints: D = 6)."""
    if config.motion == "keypoints":
        source = clip.keypoints
    else:
        if clip.landmarks is None:
            raise InputError(clip.clip_id, "has no landmarks (data.motion is 'landmarks')")
        source = clip.landmarks
    if config.points:
        if max(config.points) >= source.shape[1] or min(config.points) < 0:
            raise InputError(clip.clip_id, f"data.points {list(config.points)} out of range for "
                                           f"{source.shape[1]} {config.motion}")
        source = source[:, list(config.points)]
    return np.ascontiguousarray(source.reshape(source.shape[0], -1), dtype=np.float32)


def valid_centres(n_frames: int, level: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Inclusive ranges of level-frame centres with whole windows: ``(motion, audio)``.

    ``n_frames`` is the clip's length at level 1 (video frames); the audio has ``4·n_frames``
    features at level 1, and both are halved (rounded up) per level.
    """
    n_motion = n_frames
    n_audio = FEATURES_PER_FRAME * n_frames
    for _ in range(level - 1):
        n_motion, n_audio = -(-n_motion // 2), -(-n_audio // 2)
    half = SEGMENT_FRAMES // 2
    offset = audio_center_offset(level)
    # Audio window of centre n covers features 4n + offset + [-10, 10).
    lo = -(-(AUDIO_SEGMENT_FRAMES // 2 - offset) // FEATURES_PER_FRAME)
    hi = (n_audio - AUDIO_SEGMENT_FRAMES // 2 - offset) // FEATURES_PER_FRAME
    return (half, n_motion - 1 - half), (max(lo, 0), min(hi, n_motion - 1))


def clip_pyramids(motion_TxM: np.ndarray, audio_4TxF: np.ndarray, levels: int,
                  config: DataConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(motion level i [T_i, M], audio level i [4T_i', F])]`` for i = 1..levels."""
    motion = temporal_pyramid(motion_TxM, levels, config.pyramid_kind, config.pyramid_k)
    audio = temporal_pyramid(audio_4TxF, levels, config.pyramid_kind, config.pyramid_k)
    return [(np.asarray(m), np.asarray(a)) for m, a in zip(motion, audio)]


class Sampler:
    """Fixed-shape batches per level from ``clips`` (pyramids built once, here).

    ``batch(level, step) -> {"motion": [B, 5, M], "audio": [B, C, 20, F]}`` float32.
    """

    def __init__(self, clips: Sequence[Clip], levels: Sequence[int], data: DataConfig,
                 sampling: SamplingConfig, seed: int):
        self.config = sampling
        self.seed = seed
        self.levels = tuple(sorted(set(levels)))
        top = max(self.levels)
        for name in ("hard_negatives", "other_negatives"):
            if len(getattr(sampling, name)) < top:
                raise InputError("--set", f"sampling.{name} needs a count for each of the "
                                          f"{top} levels; got {list(getattr(sampling, name))}")
        self._levels: dict[int, dict[str, np.ndarray]] = {}
        self._stats: dict[int, dict[str, np.ndarray]] = {}
        kept = [c for c in clips if self._usable(c.n_frames, top)]
        if len(kept) < 2:
            raise InputError(None, f"need at least 2 clips long enough for level {top} "
                                   f"(about {SEGMENT_FRAMES * 2 ** (top - 1) + 8} frames); "
                                   f"got {len(kept)} of {len(clips)}")
        self.n_clips = len(kept)
        pyramids = [clip_pyramids(motion_features(c, data), c.audio_features, top, data)
                    for c in kept]
        for level in self.levels:
            motion = [p[level - 1][0] for p in pyramids]
            audio = [p[level - 1][1] for p in pyramids]
            ranges = [valid_centres(c.n_frames, level) for c in kept]
            self._stats[level] = {"motion_mean": _mean(motion), "motion_std": _std(motion),
                                  "audio_mean": _mean(audio), "audio_std": _std(audio)}
            self._levels[level] = {
                "motion": _pad_stack(motion), "audio": _pad_stack(audio),
                # Positives need both windows whole; negatives only the audio one.
                "pos_lo": np.array([max(m[0], a[0]) for m, a in ranges]),
                "pos_hi": np.array([min(m[1], a[1]) for m, a in ranges]),
                "aud_lo": np.array([a[0] for _, a in ranges]),
                "aud_hi": np.array([a[1] for _, a in ranges]),
            }
        self.motion_dim = int(pyramids[0][0][0].shape[1])
        self.audio_dim = int(pyramids[0][0][1].shape[1])

    def _usable(self, n_frames: int, top: int) -> bool:
        for level in self.levels:
            (m_lo, m_hi), (a_lo, a_hi) = valid_centres(n_frames, level)
            if min(m_hi, a_hi) < max(m_lo, a_lo):
                return False
            # Hard negatives need some audio centre at least min_shift away from any positive.
            if self.config.hard_negatives[level - 1] and \
                    a_hi - a_lo + 1 < 2 * self.config.min_shift:
                return False
        return True

    def stats(self, level: int) -> dict[str, np.ndarray]:
        """Per-channel ``motion_mean/std [M]`` and ``audio_mean/std [F]`` of the level's data."""
        return self._stats[level]

    def batch(self, level: int, step: int, rows: slice | None = None) -> dict[str, np.ndarray]:
        """Batch ``step`` of ``level``; ``rows`` selects rows of it (one process's share under
        data parallelism) with the values they have in the whole batch — every row's indices
        are drawn, only the selected rows are gathered."""
        data = self._levels[level]
        rng = np.random.default_rng([self.seed, level, step])
        size = self.config.batch_size
        n_hard = self.config.hard_negatives[level - 1]
        n_other = self.config.other_negatives[level - 1]
        # Clips in proportion to their number of positive centres: every segment equally likely.
        weights = (data["pos_hi"] - data["pos_lo"] + 1).astype(np.float64)
        clip = rng.choice(self.n_clips, size=size, p=weights / weights.sum())
        centre = data["pos_lo"][clip] + _below(rng, data["pos_hi"][clip] - data["pos_lo"][clip] + 1)
        audio_clip = [clip[:, None]]
        audio_centre = [centre[:, None]]
        if n_hard:
            audio_clip.append(np.repeat(clip[:, None], n_hard, axis=1))
            audio_centre.append(self._shifted(rng, data, clip, centre, n_hard))
        if n_other:
            other = (clip[:, None] + 1 + _below(rng, np.full((size, n_other), self.n_clips - 1))
                     ) % self.n_clips
            lo, hi = data["aud_lo"][other], data["aud_hi"][other]
            audio_clip.append(other)
            audio_centre.append(lo + _below(rng, hi - lo + 1))
        audio_clip = np.concatenate(audio_clip, axis=1)
        audio_centre = np.concatenate(audio_centre, axis=1)
        if rows is not None:
            clip, centre = clip[rows], centre[rows]
            audio_clip, audio_centre = audio_clip[rows], audio_centre[rows]
        motion_index = centre[:, None] + np.arange(SEGMENT_FRAMES) - SEGMENT_FRAMES // 2
        feature_centre = FEATURES_PER_FRAME * audio_centre + audio_center_offset(level)
        audio_index = (feature_centre[..., None] + np.arange(AUDIO_SEGMENT_FRAMES)
                       - AUDIO_SEGMENT_FRAMES // 2)
        return {"motion": data["motion"][clip[:, None], motion_index],
                "audio": data["audio"][audio_clip[..., None], audio_index]}

    def _shifted(self, rng, data, clip, centre, n):
        """Audio centres of the same clip at least ``min_shift`` away: ``[B, n]``."""
        lo, hi = data["aud_lo"][clip][:, None], data["aud_hi"][clip][:, None]
        c = centre[:, None]
        shift = self.config.min_shift
        # Draw uniformly among the allowed centres: count them, draw an index, and step over
        # the excluded run (c − shift, c + shift) — no rejection loop, fixed shapes.
        ex_lo = np.clip(c - shift + 1, lo, hi + 1)
        ex_hi = np.clip(c + shift - 1, lo - 1, hi)
        excluded = np.maximum(ex_hi - ex_lo + 1, 0)
        allowed = (hi - lo + 1) - excluded
        value = lo + _below(rng, np.broadcast_to(allowed, (len(clip), n)))
        return np.where(value >= ex_lo, value + excluded, value)


def _below(rng: np.random.Generator, high: np.ndarray) -> np.ndarray:
    """Uniform integers in ``[0, high)`` elementwise (``high`` ≥ 1)."""
    high = np.asarray(high)
    return np.minimum((rng.random(high.shape) * high).astype(np.int64), high - 1)


def _mean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays).mean(axis=0).astype(np.float32)


def _std(arrays: Sequence[np.ndarray]) -> np.ndarray:
    # The floor keeps a constant channel (a fixed jacobian entry, say) from dividing by zero
    # and from amplifying the tiny jitter of generated motion later.
    return np.maximum(np.concatenate(arrays).std(axis=0), 1e-3).astype(np.float32)


def _pad_stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Stack ``[T_c, ...]`` arrays into ``[C, max T, ...]`` (zero padding is never sampled)."""
    longest = max(a.shape[0] for a in arrays)
    out = np.zeros((len(arrays), longest) + arrays[0].shape[1:], np.float32)
    for i, a in enumerate(arrays):
        out[i, :a.shape[0]] = a
    return out
