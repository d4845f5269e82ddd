"""``msync evaluate``: multi-scale sync metrics of a dataset split (docs/design.md,
"Sync metrics").

Scores, with a trained syncer run, per level (``metrics.level_metrics``): ground-truth pairs
(each clip's motion with its own audio) and random pairs (clip c's motion with the audio of clip
c+1, a fixed derangement). Each clip is cut to its first ``clip_frames`` frames (200 = 8 s, the
shortest length that keeps ≥ 5 overlapping segments for every offset in −15..15 at level 4;
longer clips are cut, shorter ones skipped). :func:`score_pairs` scores any (motion, audio)
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


def evaluate(run: TrainedSyncers, root: str | os.PathLike, split: str = "test",
             clip_frames: int = 200, extra: Callable[[list[Clip]], dict] | None = None) -> dict:
    """The ``metrics.json`` dict for ground-truth and random pairs of ``split``.

    ``extra(clips)`` (optional) returns ``{name: (motion [C, T, M], reference [C, T, M] |
    None)}`` for the evaluated clips (T = ``clip_frames``, the clips' first frames); each
    entry is scored against the clips' own audio and added beside ``gt``/``random`` at every
    level (with a reference, also AVS_m/AVS_v).
    """
    check_clip_frames(clip_frames, run.levels)
    manifest = read_manifest(root)
    if manifest.keypoint_space != run.info.get("keypoint_space"):
        raise InputError(Path(root) / "manifest.json",
                         f"keypoint_space {manifest.keypoint_space!r} differs from the syncers' "
                         f"{run.info.get('keypoint_space')!r}")
    clips = [c for c in load_split(manifest.root, split, manifest) if c.n_frames >= clip_frames]
    if len(clips) < 2:
        raise InputError(Path(root) / "manifest.json",
                         f"split {split!r} has {len(clips)} clips of at least {clip_frames} "
                         "frames; evaluation needs 2 (lower --clip-frames?)")
    motion = np.stack([motion_features(c, run.config.data)[:clip_frames] for c in clips])
    audio = np.stack([c.audio_features[:FEATURES_PER_FRAME * clip_frames] for c in clips])
    gt = score_pairs(run, motion, audio)
    shuffled = score_pairs(run, motion, np.roll(audio, -1, axis=0))
    levels = {str(level): {"gt": summarise(gt[level]), "random": summarise(shuffled[level])}
              for level in run.levels}
    for name, (other, reference) in (extra(clips) if extra else {}).items():
        scored = score_pairs(run, other, audio, reference)
        for level in run.levels:
            levels[str(level)][name] = summarise(scored[level])
    return {
        "levels": levels,
        "n_clips": len(clips), "clip_frames": clip_frames, "split": split,
        "offsets": {"min": -MAX_OFFSET, "max": MAX_OFFSET, "unit": "frames of each level",
                    "av_off_mean": "mean of |AV-Off| over clips"},
        "overlap_rule": OVERLAP_RULE, "random_pairs": "motion of clip c with audio of clip c+1",
        "keypoint_space": manifest.keypoint_space,
    }


def markdown(result: dict) -> str:
    lines = [f"# Sync metrics ({result['split']}, {result['n_clips']} clips × "
             f"{result['clip_frames']} frames)", "",
             f"Offsets δ ∈ [{result['offsets']['min']}, {result['offsets']['max']}] frames of "
             f"each level; {result['overlap_rule']}.", "",
             "| level | pairs | mean \\|AV-Off\\| | std | AV-Conf | AVS_u |",
             "|---|---|---|---|---|---|"]
    for level, entry in result["levels"].items():
        for kind, m in entry.items():
            lines.append(f"| {level} | {kind} | {m['av_off_mean']:.2f} | {m['av_off_std']:.2f} | "
                         f"{m['av_conf_mean']:.3f} | {m['avs_u_mean']:.3f} |")
    return "\n".join(lines) + "\n"
