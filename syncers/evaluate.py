"""``msync evaluate``: multi-scale sync metrics of a dataset split (docs/design.md,
"Sync metrics").

Scores, with a trained syncer run, per level (``metrics.level_metrics``): ground-truth pairs
(each clip's motion with its own audio) and random pairs (clip c's motion with the audio of clip
c+1, a fixed derangement). Each clip is cut to its first ``clip_frames`` frames (200 = 8 s, the
shortest length that keeps ≥ 5 overlapping segments for every offset in −15..15 at level 4;
longer clips are cut, shorter ones skipped); ``--clip-frames auto`` gives each level its own
length (2, 3, 5, 8 s), so that corpora of short clips are measured at the fine levels.
:func:`score_pairs` scores any (motion, audio)
pairs; :func:`evaluate`'s ``extra`` hook scores more motion against each clip's own audio — the
generator's evaluation (``motion.evaluate``) adds its ``generated`` entry with it.

Writes ``DIR/metrics.json``::

    {"levels": {"1": {"gt": {"av_off_mean", "av_off_std", "av_conf_mean", "avs_u_mean", ...},
                      "random": {...}}, ...},
     "n_clips", "clip_frames", "split", "offsets", "overlap_rule", "syncers", "keypoint_space"}

and ``DIR/metrics.md`` (the same numbers as a table).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from syncers.data.dataset import Clip, load_split, read_manifest
from syncers.data.features import feature_mismatch
from syncers.data.layout import FEATURES_PER_FRAME
from syncers.metrics import MAX_OFFSET, MIN_OVERLAP, level_metrics, overlap_counts, summarise
from syncers.run.errors import InputError
from syncers.sampling import motion_features
from syncers.train import TrainedSyncers

OVERLAP_RULE = (f"motion segment n (5 level frames) is paired with audio segment n+δ (20 level "
                f"features) only when both windows lie inside the clip; every offset keeps at "
                f"least {MIN_OVERLAP} such pairs")


def check_clip_frames(clip_frames: int, levels: Sequence[int]) -> None:
    """Refuse a clip length that leaves an offset with fewer than ``MIN_OVERLAP`` pairs."""
    for level in levels:
        fewest = int(overlap_counts(clip_frames, level).min())
        if fewest < MIN_OVERLAP:
            need = next(n for n in range(clip_frames, 100_000)
                        if overlap_counts(n, level).min() >= MIN_OVERLAP)
            raise InputError("--clip-frames", f"{clip_frames} frames leave {fewest} overlapping "
                                              f"segments for some offset in ±{MAX_OFFSET} at "
                                              f"level {level}; it needs at least {need}")


def score_pairs(run: TrainedSyncers, motion_CxTxM: np.ndarray, audio_CxAxF: np.ndarray,
                reference_CxTxM: np.ndarray | None = None,
                levels: Sequence[int] | None = None) -> dict[int, dict[str, np.ndarray]]:
    """Per-clip metrics ``{level: {"av_off", "av_conf", "avs_u", ...: [C]}}`` of given pairs.

    ``motion [C, T, M]`` (``sampling.motion_features`` of each clip), ``audio [C, 4T, F]``;
    with ``reference [C, T, M]`` (ground truth of generated motion) also AVS_m and AVS_v.
    """
    motion_CxTxM = np.asarray(motion_CxTxM, np.float32)
    audio_CxAxF = np.asarray(audio_CxAxF, np.float32)
    if motion_CxTxM.ndim != 3 or motion_CxTxM.shape[2] != run.model.motion_dim:
        raise ValueError(f"motion must be [C, T, {run.model.motion_dim}]; "
                         f"got {list(motion_CxTxM.shape)}")
    levels = tuple(levels or run.levels)
    check_clip_frames(motion_CxTxM.shape[1], levels)
    data = run.config.data
    out = {}
    for level in levels:
        result = level_metrics(run.params[level], motion_CxTxM, audio_CxAxF, reference_CxTxM,
                               model=run.model, level=level, kind=data.pyramid_kind,
                               k=data.pyramid_k, score=run.info["score"])
        out[level] = {k: np.asarray(v) for k, v in result.items()}
    return out


LEVEL_CLIP_FRAMES = (50, 75, 125, 200)   # --clip-frames auto: 2, 3, 5, 8 s at levels 1-4


def clip_frames_per_level(clip_frames: int | None, levels: Sequence[int]) -> dict[int, int]:
    """``{level: clip length}``: ``clip_frames`` at every level, or with None (``auto``) the
    shortest whole seconds that keep every offset's overlap at that level
    (:data:`LEVEL_CLIP_FRAMES`), so that short clips still count at the fine levels."""
    if clip_frames is None:
        return {level: LEVEL_CLIP_FRAMES[level - 1] for level in levels}
    check_clip_frames(clip_frames, levels)
    return {level: clip_frames for level in levels}


def evaluate(run: TrainedSyncers, root: str | os.PathLike, split: str = "test",
             clip_frames: int | None = 200,
             extra: Callable[[list[Clip], int], dict] | None = None) -> dict:
    """The ``metrics.json`` dict for ground-truth and random pairs of ``split``.

    Each clip is cut to its first ``clip_frames`` frames (shorter clips are skipped); with
    ``clip_frames=None`` each level uses its own length (:func:`clip_frames_per_level`) and the
    clips long enough for it. ``extra(clips, n_frames)`` (optional) returns ``{name: (motion
    [C, T, M], reference [C, T, M] | None)}`` for the evaluated clips (T = ``n_frames``, the
    clips' first frames); each entry is scored against the clips' own audio and added beside
    ``gt``/``random`` at every level (with a reference, also AVS_m/AVS_v).
    """
    lengths = clip_frames_per_level(clip_frames, run.levels)
    manifest = read_manifest(root)
    if manifest.keypoint_space != run.info.get("keypoint_space"):
        raise InputError(Path(root) / "manifest.json",
                         f"keypoint_space {manifest.keypoint_space!r} differs from the syncers' "
                         f"{run.info.get('keypoint_space')!r}")
    mismatch = feature_mismatch(manifest.features, run.info.get("features"))
    if mismatch:
        raise InputError(Path(root) / "manifest.json",
                         f"the data's audio features differ from those the syncers were "
                         f"trained on ({mismatch})")
    every = load_split(manifest.root, split, manifest)
    levels, n_clips = {}, {}
    for length in sorted(set(lengths.values())):
        at = [level for level in run.levels if lengths[level] == length]
        clips = [c for c in every if c.n_frames >= length]
        if len(clips) < 2:
            raise InputError(Path(root) / "manifest.json",
                             f"split {split!r} has {len(clips)} clips of at least {length} "
                             f"frames; evaluation needs 2 (lower --clip-frames?)")
        motion = np.stack([motion_features(c, run.config.data)[:length] for c in clips])
        audio = np.stack([c.audio_features[:FEATURES_PER_FRAME * length] for c in clips])
        gt = score_pairs(run, motion, audio, levels=at)
        shuffled = score_pairs(run, motion, np.roll(audio, -1, axis=0), levels=at)
        for level in at:
            levels[str(level)] = {"gt": summarise(gt[level]),
                                  "random": summarise(shuffled[level])}
            n_clips[str(level)] = len(clips)
        for name, (other, reference) in (extra(clips, length) if extra else {}).items():
            scored = score_pairs(run, other, audio, reference, levels=at)
            for level in at:
                levels[str(level)][name] = summarise(scored[level])
    levels = {str(level): levels[str(level)] for level in run.levels}
    same = len(set(lengths.values())) == 1
    return {
        "levels": levels,
        "n_clips": next(iter(n_clips.values())) if same else n_clips,
        "clip_frames": next(iter(lengths.values())) if same else
        {str(k): v for k, v in lengths.items()},
        "split": split,
        "offsets": {"min": -MAX_OFFSET, "max": MAX_OFFSET, "unit": "frames of each level",
                    "av_off_mean": "mean of |AV-Off| over clips"},
        "overlap_rule": OVERLAP_RULE, "random_pairs": "motion of clip c with audio of clip c+1",
        "keypoint_space": manifest.keypoint_space,
    }


def describe_clips(result: dict) -> str:
    """"12 clips × 200 frames", or per level when the levels used different lengths."""
    n_clips, frames = result["n_clips"], result["clip_frames"]
    if isinstance(frames, dict):
        return ", ".join(f"level {lv}: {n_clips[lv]} clips × {frames[lv]} frames"
                         for lv in frames)
    return f"{n_clips} clips × {frames} frames"


def markdown(result: dict) -> str:
    lines = [f"# Sync metrics ({result['split']}, {describe_clips(result)})", "",
             f"Offsets δ ∈ [{result['offsets']['min']}, {result['offsets']['max']}] frames of "
             f"each level; {result['overlap_rule']}.", "",
             "| level | pairs | mean \\|AV-Off\\| | std | AV-Conf | AVS_u |",
             "|---|---|---|---|---|---|"]
    for level, entry in result["levels"].items():
        for kind, m in entry.items():
            lines.append(f"| {level} | {kind} | {m['av_off_mean']:.2f} | {m['av_off_std']:.2f} | "
                         f"{m['av_conf_mean']:.3f} | {m['avs_u_mean']:.3f} |")
    return "\n".join(lines) + "\n"
