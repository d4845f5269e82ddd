"""``msync analyze``: how much a recording's head motion follows its speech, per time scale —
the protocol of the paper's Table 2 (docs/design.md, "Speech/head-motion analysis").

1. **Rigid motion.** A subset of points (``--points``: 17-47 = brows, nose and eyes of the 68
   face-alignment landmarks, the default; 0-4 = the phantom's brows, eyes and nose) is read
   from the clips' ``landmarks [T, P, 2]`` when every clip has them, else from the *positions*
   of their ``keypoints [T, 10, 6]`` (x, y). Jacobians are left out: they carry local
   deformation (blinks, the lower lip's stretch), not the motion of rigid points, and without
   them keypoints and landmarks are the same input — 2-D point tracks. Each clip's tracks are
   centred on their own temporal mean, so where a face sits in the frame (constant per clip)
   does not swamp how it moves.
2. **Syncers.** The train split's tracks are written as a derived dataset (``OUT/rigid``, the
   tracks stored as ``landmarks``) and one syncer per scale s = 1..``--scales`` — pyramid levels
   1..s (paper eq. 5), segments of 200, 400, 800 (1600) ms — is trained on it with the
   ``triplet`` objective and negatives from the same clip only (``configs/analyze.yaml``), by
   :func:`syncers.train.train_and_evaluate` under ``OUT/syncers``: a rerun resumes.
3. **Scores.** On the evaluation clips (``--split``; ``heldout`` = val ∪ test by default: the
   paper evaluates on held-out data, and val is as unseen as test here since training uses no
   validation, while twice the clips give the test its power), all cut to the shortest one's
   length, the SyncNet protocol of :mod:`syncers.metrics` gives each clip's AV-Off per scale
   for ground-truth pairs, random pairs (motion of clip c with the audio of clip c+1) and, with
   ``--generated DIR``, generated pairs: the motion of the clip with the *same id* in DIR (any
   split) with the audio of that clip in ``--data`` (so every row hears the same audio).
4. **Statistics.** Per scale, |AV-Off| mean ± std (frames of the scale) and the one-sided
   Mann–Whitney U p-value that |AV-Off| of GT (or generated) pairs is stochastically *smaller*
   than that of random pairs (:func:`mann_whitney_p`) — synchrony shows as offsets near 0.

Writes ``OUT/report.json`` (``{"scales": {"1": {"gt": {"av_off_mean", "av_off_std"},
"random": …, "generated": …, "p_gt_vs_random", "p_generated_vs_random", "n_clips",
"clip_frames"}, …}, "points": […], "n_clips": N, "split": …, "generated": path | null}``,
generated keys only with ``--generated``), ``OUT/report.md`` and the plots
``offsets_scale{s}.png`` (AV-Off histograms) and ``lag_curve.png`` (mean distance vs offset).
A rerun into the same ``OUT`` with fewer ``--scales`` keeps the other scales' entries of the
previous report (same points, split and generated motion; each entry says on how many clips it
was measured) and their histograms; ``lag_curve.png`` shows the scales scored now.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

import configs
from syncers.data import prepare
from syncers.data.dataset import (Clip, load_split, read_clip, read_manifest, write_clip,
                                  write_manifest)
from syncers.data.layout import FEATURES_PER_FRAME
from syncers.evaluate import score_pairs
from syncers.metrics import MAX_OFFSET, MIN_OVERLAP, overlap_counts
from syncers.run import config as config_lib
from syncers.run import progress
from syncers.run.errors import InputError
from syncers.run.rundir import atomic_write, locked, read_json
from syncers.sampling import motion_features
from syncers.train import SyncersConfig, load_run, train_and_evaluate

DEFAULT_CONFIG = configs.path("analyze.yaml")
MAX_SCALES = 4
MAX_POINTS = 1000           # --points indices: far above any landmark set's 68 or 98 points
SPLITS = {"heldout": ("val", "test"), "test": ("test",), "val": ("val",), "train": ("train",),
          "all": ("train", "val", "test")}
FRAME_MS = 40.0             # one level-1 frame at 25 fps
KINDS = ("gt", "random", "generated")


def parse_points(text: str) -> tuple[int, ...]:
    """``"17-47"``, ``"0-4"``, ``"0,2,5-7"`` → sorted unique indices; bad text → InputError.
    Indices run from 0 to ``MAX_POINTS - 1`` at most (refused before any range is built; the
    data's own point count is checked once it is read, :func:`check_points`)."""
    points: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        first, sep, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if sep else lo
        except ValueError:
            raise InputError("--points", f"{part!r} is not a point index or a range like 17-47 "
                                         f"(expected e.g. 17-47, 0-4 or 0,2,5-7)") from None
        if hi < lo:
            raise InputError("--points", f"range {part!r} runs backwards")
        if hi >= MAX_POINTS:
            raise InputError("--points", f"point {hi} is out of range: indices run from 0 to "
                                         f"{MAX_POINTS - 1} at most (68 landmarks: 0-67)")
        points.update(range(lo, hi + 1))
    return tuple(sorted(points))


def motion_source(clips: Sequence[Clip]) -> str:
    """``"landmarks"`` when every clip has them, else ``"keypoints"`` (their positions)."""
    return "landmarks" if clips and all(c.landmarks is not None for c in clips) else "keypoints"


def rigid_tracks(clip: Clip, source: str) -> np.ndarray:
    """All points' 2-D tracks ``[T, P, 2]`` float32, each centred on its temporal mean."""
    tracks = clip.landmarks if source == "landmarks" else clip.keypoints[..., :2]
    if tracks is None:
        raise InputError(clip.clip_id, "has no landmarks, unlike the other clips")
    tracks = np.asarray(tracks, np.float64)
    return (tracks - tracks.mean(axis=0, keepdims=True)).astype(np.float32)


def as_rigid(clip: Clip, source: str) -> Clip:
    """``clip`` with its centred tracks as ``landmarks`` (what the analysis syncers read)."""
    return Clip(clip_id=clip.clip_id, keypoints=clip.keypoints,
                audio_features=clip.audio_features, landmarks=rigid_tracks(clip, source),
                meta=clip.meta)


def check_points(points: Sequence[int], clip: Clip, source: str) -> None:
    n_points = (clip.landmarks if source == "landmarks" else clip.keypoints).shape[1]
    if max(points) >= n_points:
        hint = ("; the clips have no landmarks, so --points indexes their keypoints (the "
                "phantom's brows, eyes and nose are --points 0-4)") if source == "keypoints" else ""
        raise InputError("--points", f"point {max(points)} is out of range: the data's {source} "
                                     f"have {n_points} points (0-{n_points - 1}){hint}")


def mann_whitney_p(offsets: Sequence[float], random_offsets: Sequence[float]) -> float:
    """One-sided Mann–Whitney U p-value that ``|offsets|`` is stochastically smaller than
    ``|random_offsets|`` (1.0 when all values are equal: nothing tells them apart)."""
    a = np.abs(np.asarray(offsets, np.float64))
    b = np.abs(np.asarray(random_offsets, np.float64))
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one offset")
    if np.ptp(np.concatenate([a, b])) == 0:
        return 1.0
    return float(stats.mannwhitneyu(a, b, alternative="less").pvalue)


def offset_summary(offsets: Sequence[float]) -> dict[str, float]:
    """``{"av_off_mean", "av_off_std"}`` of |AV-Off| (frames of the scale)."""
    magnitude = np.abs(np.asarray(offsets, np.float64))
    return {"av_off_mean": float(magnitude.mean()), "av_off_std": float(magnitude.std())}


def report_dict(offsets: dict[int, dict[str, np.ndarray]], points: Sequence[int],
                n_clips: int) -> dict:
    """``report.json`` from per-clip AV-Off ``{scale: {"gt"|"random"|"generated": [C]}}``."""
    scales = {}
    for scale, kinds in sorted(offsets.items()):
        entry = {kind: offset_summary(kinds[kind]) for kind in KINDS if kind in kinds}
        entry["p_gt_vs_random"] = mann_whitney_p(kinds["gt"], kinds["random"])
        if "generated" in kinds:
            entry["p_generated_vs_random"] = mann_whitney_p(kinds["generated"], kinds["random"])
        scales[str(scale)] = entry
    return {"scales": scales, "points": [int(p) for p in points], "n_clips": int(n_clips)}


# --------------------------------------------------------------------------- the analysis

def analyze(data: str | os.PathLike, out: str | os.PathLike, points: Sequence[int],
            scales: int = 3, generated: str | os.PathLike | None = None,
            split: str = "heldout", config_path: str | os.PathLike | None = None,
            overrides: Sequence[str] = ()) -> dict:
    """Run the whole protocol (module docstring); returns the ``report.json`` dict."""
    start = time.perf_counter()
    if not 1 <= scales <= MAX_SCALES:
        raise InputError("--scales", f"expected 1 to {MAX_SCALES} scales (200 to "
                                     f"{200 * 2 ** (MAX_SCALES - 1)} ms); got {scales}")
    if split not in SPLITS:
        raise InputError("--split", f"unknown split {split!r} (choose {', '.join(SPLITS)})")
    if not points:
        raise InputError("--points", "no points given")
    out = Path(out)
    manifest = read_manifest(data)
    train_clips = load_split(manifest.root, "train", manifest)
    eval_clips = [c for name in SPLITS[split] for c in load_split(manifest.root, name, manifest)]
    source = motion_source(train_clips + eval_clips)
    if not train_clips:
        raise InputError(manifest.root / "manifest.json", "the train split is empty; analyze "
                                                          "trains its syncers on it")
    check_points(points, train_clips[0], source)
    levels = tuple(range(1, scales + 1))
    clip_frames, eval_clips = _evaluation_length(eval_clips, scales, manifest.root, split)
    matched = None if generated is None else \
        _generated_clips(generated, eval_clips, clip_frames, source, manifest)
    # The syncers' config is read (keys, types, ranges) before anything is written.
    overrides = [*overrides, "data.motion=landmarks",
                 f"data.points=[{','.join(map(str, points))}]",
                 f"train.levels=[{','.join(map(str, levels))}]"]
    config = config_lib.load(SyncersConfig, config_path or DEFAULT_CONFIG, overrides)

    # OUT/.lock for the rest: a second analysis into this --out is refused (its syncers
    # would train in the same run directory).
    with locked(out):
        # Step 2: syncers on the train split's centred tracks.
        rigid_root = _write_rigid(out / "rigid", manifest, train_clips, source)
        # The path is set directly: through YAML an escaped emoji comes back as two surrogates.
        config = dataclasses.replace(config, data_root=str(rigid_root))
        trained_at = time.perf_counter()
        train_and_evaluate(config, out / "syncers")
        run = load_run(out / "syncers", levels)
        train_seconds = time.perf_counter() - trained_at

        # Step 3: per-clip AV-Off (and distance curves) for each kind of pair.
        pairs = _pairs(eval_clips, clip_frames, source, config, matched)
        offsets: dict[int, dict[str, np.ndarray]] = {s: {} for s in levels}
        curves: dict[int, dict[str, np.ndarray]] = {s: {} for s in levels}
        with progress.bar(len(levels) * len(pairs), "analyze", "score") as bar:
            for scale in levels:
                for kind, (motion, audio) in pairs.items():
                    result = score_pairs(run, motion, audio, levels=(scale,))[scale]
                    offsets[scale][kind] = np.asarray(result["av_off"])
                    curves[scale][kind] = np.asarray(result["distances"]).mean(axis=0)
                    bar.update(1)
        report = report_dict(offsets, points, len(eval_clips))
        for entry in report["scales"].values():
            entry.update(n_clips=len(eval_clips), clip_frames=clip_frames)
        report.update(split=split, generated=None if generated is None else
                      str(Path(generated).resolve()))
        report = _keep_other_scales(report, out / "report.json")
        atomic_write(out / "report.json", json.dumps(report, indent=1) + "\n")
        details = {"data": str(manifest.root), "split": split, "clip_frames": clip_frames,
                   "source": source, "n_train_clips": len(train_clips),
                   "n_generated": len(pairs["generated"][0]) if "generated" in pairs else 0,
                   "steps": config.train.steps, "objective": config.objective.name,
                   "train_seconds": train_seconds,
                   "seconds": time.perf_counter() - start}
        atomic_write(out / "report.md", markdown(report, details))
        plot_offsets(offsets, out)
        plot_lag_curves(curves, out)
    return report


def _keep_other_scales(report: dict, path: Path) -> dict:
    """``report`` with the scales of the previous ``report.json`` at ``path`` that this run did
    not score (an analysis rerun with fewer ``--scales``), when that report scored the same
    points, split and generated motion; each entry says on how many clips of how many
    frames it was measured."""
    previous = read_json(path)
    same = all(previous.get(key) == report[key] for key in ("points", "split", "generated"))
    kept = previous.get("scales") if same else None
    if not isinstance(kept, dict):
        return report
    scales = {k: v for k, v in kept.items() if k not in report["scales"]} | report["scales"]
    return report | {"scales": dict(sorted(scales.items(), key=lambda item: int(item[0])))}


def _evaluation_length(clips: list[Clip], scales: int, root: Path, split: str):
    """``(frames, clips)``: clips long enough for the coarsest scale, cut to the shortest."""
    need = next(n for n in range(1, 10_000) if overlap_counts(n, scales).min() >= MIN_OVERLAP)
    kept = [c for c in clips if c.n_frames >= need]
    if len(kept) < 2:
        raise InputError(root / "manifest.json",
                         f"split {split!r} has {len(kept)} clips of at least {need} frames "
                         f"({need / 25:.1f} s, what scale {scales} needs); the analysis needs 2 "
                         "(try --split all or fewer --scales)")
    return min(c.n_frames for c in kept), kept


def _write_rigid(root: Path, manifest, clips: Sequence[Clip], source: str) -> Path:
    """The derived training set: ``clips`` with their centred tracks as landmarks.

    Deterministic, so a rerun (which resumes the syncers) finds the same data; skipped when an
    earlier run already wrote it from the same dataset."""
    stamp = {"analyze_source": str(Path(manifest.root).resolve()), "motion": source,
             "centred": True, "clips": [c.clip_id for c in clips]}
    try:
        previous = read_manifest(root).extra
    except InputError:
        previous = None
    if previous == stamp:
        return root
    if previous is not None and (root.parent / "syncers").exists():
        raise InputError(root.parent, "holds an analysis of other data or other clips (its "
                                      "syncers would resume on them); use a new --out")
    for clip in clips:
        rigid = as_rigid(clip, source)
        write_clip(root, "train", clip.clip_id, rigid.keypoints, rigid.audio_features,
                   meta=clip.meta, landmarks=rigid.landmarks)
    write_manifest(root, {"train": [(c.clip_id, c.n_frames) for c in clips]},
                   manifest.keypoint_space, manifest.features, manifest.fps, extra=stamp)
    return root


def _pairs(clips: list[Clip], frames: int, source: str, config: SyncersConfig,
           matched: list[tuple[Clip, int]] | None) -> dict[str, tuple]:
    """``{kind: (motion [C, T, M], audio [C, 4T, F])}`` for gt, random and generated pairs
    (``matched``: :func:`_generated_clips`)."""
    def motion(clip: Clip) -> np.ndarray:
        return motion_features(as_rigid(clip, source), config.data)[:frames]

    gt_motion = np.stack([motion(c) for c in clips])
    audio = np.stack([c.audio_features[:FEATURES_PER_FRAME * frames] for c in clips])
    pairs = {"gt": (gt_motion, audio), "random": (gt_motion, np.roll(audio, -1, axis=0))}
    if matched is not None:
        pairs["generated"] = (np.stack([motion(g) for g, _ in matched]),
                              np.stack([audio[i] for _, i in matched]))
    return pairs


def _generated_clips(root, clips: list[Clip], frames: int, source: str, manifest):
    """``[(generated clip, index into clips)]``: same clip id, any split, ≥ ``frames`` long."""
    gen_manifest = read_manifest(root)
    if gen_manifest.keypoint_space != manifest.keypoint_space:
        raise InputError(Path(root) / "manifest.json",
                         f"keypoint_space {gen_manifest.keypoint_space!r} differs from the "
                         f"data's {manifest.keypoint_space!r}")
    where = {info.clip_id: split for split, infos in gen_manifest.splits.items()
             for info in infos}
    matched = []
    for index, clip in enumerate(clips):
        if clip.clip_id not in where:
            continue
        gen = read_clip(gen_manifest.root, where[clip.clip_id], clip.clip_id)
        if source == "landmarks" and gen.landmarks is None:
            raise InputError(Path(root) / where[clip.clip_id] / f"{clip.clip_id}.npz",
                             "has no landmarks, but the analysis runs on landmarks")
        if gen.n_frames >= frames:
            matched.append((gen, index))
    if not matched:
        raise InputError(root, f"no generated clip of at least {frames} frames shares an id with "
                               f"the {len(clips)} evaluated clips (e.g. {clips[0].clip_id!r})")
    return matched


# --------------------------------------------------------------------------- outputs

def markdown(report: dict, details: dict) -> str:
    has_generated = any("generated" in e for e in report["scales"].values())
    head = "| scale | segment | GT | random |" + (" generated |" if has_generated else "") + \
        " p GT vs random |" + (" p generated vs random |" if has_generated else "")
    lines = [
        "# Speech/head-motion analysis (the paper's Table 2 protocol)", "",
        f"{report['n_clips']} clips of `{details['data']}` (split `{details['split']}`), "
        f"{details['clip_frames']} frames each; points {_ranges(report['points'])} of the "
        f"{details['source']} (2-D positions, centred per clip); one `{details['objective']}` "
        f"syncer per scale, trained {details['steps']} steps on {details['n_train_clips']} "
        f"train clips.", "",
        head, "|" + "---|" * (head.count("|") - 1)]
    for scale, entry in report["scales"].items():
        ms = int(200 * 2 ** (int(scale) - 1))
        row = [scale, f"{ms} ms"] + [_pm(entry[k]) for k in KINDS[:2]]
        if has_generated:
            row.append(_pm(entry["generated"]))
        row.append(f"{entry['p_gt_vs_random']:.2g}")
        if has_generated:
            row.append(f"{entry['p_generated_vs_random']:.2g}")
        lines.append("| " + " | ".join(row) + " |")
    now = (report["n_clips"], details["clip_frames"])
    earlier = [f"Scale {scale}: from an earlier run with more --scales, on {entry['n_clips']} "
               f"clips of {entry['clip_frames']} frames."
               for scale, entry in report["scales"].items()
               if (entry.get("n_clips", now[0]), entry.get("clip_frames", now[1])) != now]
    lines += [""] + earlier if earlier else []
    lines += ["", "Cells: mean ± std over clips of |AV-Off| (SyncNet protocol, offsets in "
                  f"[-{MAX_OFFSET}, {MAX_OFFSET}] frames of the scale; a frame of scale s lasts "
                  "40·2^(s−1) ms). Random pairs: the motion of clip c with the audio of clip "
                  "c+1. p: one-sided Mann–Whitney U, |AV-Off| smaller than for random pairs."]
    if has_generated:
        lines.append(f"Generated: {details['n_generated']} clips matched by clip id, scored "
                     "with the audio of the same clip in the data.")
    lines += ["", f"Syncer training {details['train_seconds']:.0f} s; whole analysis "
                  f"{details['seconds']:.0f} s.", ""]
    lines += [f"![AV-Off histograms, scale {s}](offsets_scale{s}.png)" for s in report["scales"]]
    lines += ["", "![mean distance vs audio offset, per scale](lag_curve.png)"]
    return "\n".join(lines) + "\n"


def _pm(summary: dict) -> str:
    return f"{summary['av_off_mean']:.2f} ± {summary['av_off_std']:.2f}"


def _ranges(points: Sequence[int]) -> str:
    runs, start = [], None
    for i, p in enumerate(points):
        if start is None:
            start = p
        if i + 1 == len(points) or points[i + 1] != p + 1:
            runs.append(str(start) if start == p else f"{start}-{p}")
            start = None
    return ",".join(runs)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


_COLOURS = {"gt": "tab:blue", "random": "tab:gray", "generated": "tab:orange"}


def plot_offsets(offsets: dict[int, dict[str, np.ndarray]], out: Path) -> None:
    """``offsets_scale{s}.png``: histograms of signed AV-Off per kind of pair."""
    plt = _pyplot()
    bins = np.arange(-MAX_OFFSET, MAX_OFFSET + 2) - 0.5
    for scale, kinds in offsets.items():
        fig, ax = plt.subplots(figsize=(6, 3.2))
        for kind, values in kinds.items():
            ax.hist(values, bins=bins, histtype="step", linewidth=1.8, color=_COLOURS[kind],
                    label=f"{kind} (n={len(values)})")
        ax.set_xlabel(f"AV-Off (frames of {FRAME_MS * 2 ** (scale - 1):.0f} ms)")
        ax.set_ylabel("clips")
        ax.set_title(f"scale {scale}: {200 * 2 ** (scale - 1)} ms segments")
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(out / f"offsets_scale{scale}.png", dpi=100)
        plt.close(fig)


def plot_lag_curves(curves: dict[int, dict[str, np.ndarray]], out: Path) -> None:
    """``lag_curve.png``: mean distance vs offset (ms) per scale; GT solid, random dashed."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.2), squeeze=False)
    for ax, (scale, kinds) in zip(axes[0], curves.items()):
        lag_ms = np.arange(-MAX_OFFSET, MAX_OFFSET + 1) * FRAME_MS * 2 ** (scale - 1)
        for kind, curve in kinds.items():
            ax.plot(lag_ms, curve, color=_COLOURS[kind], label=kind,
                    linestyle="-" if kind != "random" else "--")
        ax.axvline(0.0, color="black", linewidth=0.5)
        ax.set_title(f"scale {scale} ({200 * 2 ** (scale - 1)} ms)")
        ax.set_xlabel("audio offset (ms)")
    axes[0][0].set_ylabel("mean distance (−score)")
    axes[0][0].legend(frameon=False)
    fig.tight_layout()
    fig.savefig(out / "lag_curve.png", dpi=100)
    plt.close(fig)


def analyze_command(args) -> None:
    """``msync analyze --data DIR|--videos DIR --out DIR [--points 17-47] [--generated DIR]
    [--scales 3]``; with ``--videos`` the folder is prepared into ``OUT/dataset`` first
    (``msync data prepare``'s defaults: dlib landmarks, split by speaker; resumable)."""
    points = parse_points(args.points)
    data = args.data
    if data is None and args.generated:
        raise InputError("--generated", "compare generated motion with --data (a prepared "
                                        "dataset), not --videos")
    # OUT is locked from the start with --videos (OUT/dataset is prepared first), else by
    # analyze() once the inputs are read.
    with locked(args.out) if data is None else contextlib.nullcontext():
        if data is None:
            data = Path(args.out) / "dataset"
            prepared = prepare.prepare_dataset(
                args.videos, data,
                prepare.PrepareOptions(speakers=getattr(args, "speakers", None)),
                workers=getattr(args, "workers", 1))
            print(f"msync: prepared {len(prepared['prepared'])} video(s) "
                  f"({prepared['already_done']} already done, {len(prepared['skipped'])} "
                  f"skipped: see {data / 'prepare_report.json'})", file=sys.stderr)
        report = analyze(data, args.out, points, args.scales, args.generated,
                         getattr(args, "split", "heldout"), getattr(args, "config", None),
                         getattr(args, "overrides", None) or ())
    parts = []
    for scale, entry in report["scales"].items():
        parts.append(f"{200 * 2 ** (int(scale) - 1)} ms GT {entry['gt']['av_off_mean']:.2f} / "
                     f"random {entry['random']['av_off_mean']:.2f} "
                     f"(p={entry['p_gt_vs_random']:.2g})")
    print(f"msync: mean |AV-Off| {'; '.join(parts)} on {report['n_clips']} clips -> {args.out}",
          file=sys.stderr)
