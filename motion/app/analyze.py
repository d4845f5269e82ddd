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
2. **Folds by speaker.** Every clip of the dataset (all its splits) is given a speaker —
   ``--speakers TABLE.tsv`` (columns file, speaker) for the clip's source video, else the
   clip's ``meta["speaker"]``, one per phantom clip, else ``msync data prepare``'s rule (the
   speaker folder, else the name up to its last ``_``), which the report names — and the
   speakers are dealt into ``--folds`` K folds (:func:`assign_folds`; default 5, fewer where a
   fold would hold one clip: :func:`default_folds`). A rule-derived speaker holding over half
   the clips is warned about (:func:`grouping_warnings`); fewer than 2 speakers, or than K, is
   refused. With ``--recordings TABLE.tsv`` (columns file, recording, part) the clips that
   are consecutive pieces of one recording are first joined into longer clips
   (:func:`join_consecutive`): 5 s pieces are otherwise cut to 3.88 s at 800 ms, and none is
   long enough for the shifted-audio control there.
3. **Syncers.** For each fold, the other folds' centred tracks are written as a derived dataset
   (``OUT/fold{k}/rigid``, the tracks stored as ``landmarks``) and one syncer per scale s =
   1..``--scales`` — pyramid levels 1..s (paper eq. 5), segments of 200, 400, 800 (1600) ms —
   is trained on it with the ``triplet`` objective and negatives from the same clip only
   (``configs/analyze.yaml``), by :func:`syncers.train.train_and_evaluate` under
   ``OUT/fold{k}/syncers``: a rerun resumes. So every clip is scored once, by syncers that
   never saw its speaker (scoring the clips the syncers trained on finds memorised pairs,
   not synchrony).
4. **Scores.** Per fold and scale, the held-out clips long enough for the scale are cut to
   a common length (:func:`scoring_groups`; shorter ones are listed as dropped, with why) and
   the SyncNet protocol of :mod:`syncers.metrics` gives the AV-Off of every (motion, audio)
   pair of a group (:func:`syncers.metrics.pair_metrics`): ground truth on the diagonal,
   random pairs off it (motion of one clip with the audio of another), plus the controls —
   shifted audio (the clip's own audio from beyond the offsets searched) — and, with
   ``--generated DIR``, the motion of the clip with the *same id* in DIR (any split) against
   the same audio.
5. **Statistics.** Per scale, |AV-Off| mean ± std (frames of the scale) pooled over folds and
   a permutation p-value (:func:`permutation_p`): how often re-pairing the audio within each
   group at random gives a mean |AV-Off| as small as the recorded pairing's.
   It is exact under the null (motion independent of its speech) whatever the offsets'
   distribution; a Mann–Whitney test of one fixed re-pairing was not: its verdict depended
   on which re-pairing it drew (on a head-free phantom corpus p ranged 0.005–1 over the 39
   cyclic ones).

Writes ``OUT/report.json`` (``{"scales": {"1": {"gt": {"av_off_mean", "av_off_std"}, "random":
…, "shifted": …, "generated": …, "p_gt_vs_random", "p_shifted_vs_random",
"p_generated_vs_random", "n_clips", "n_random_pairs", "n_shifted", "clip_frames": [frames of
the groups], "dropped": {clip id: why}}, …}, "points": […], "n_clips": N, "folds": K,
"speakers": {"n", "rule", "warnings", "table"}, "joined": {clip id: [piece ids]} | null,
"not_scored": {scale: {"n_clips": 0,
"dropped"}}, "generated": path | null, "seconds", "train_seconds"}``; generated keys only with
``--generated``, shifted where clips are long enough), ``OUT/report.md`` and the plots
``offsets_scale{s}.png`` (AV-Off histograms) and ``lag_curve.png`` (mean distance vs offset).
``seconds`` is the whole command's wall time, preparing ``--videos`` included. A rerun into the
same ``OUT`` with fewer ``--scales`` keeps the other scales' entries of the previous report
(same points, folds, speakers and generated motion) and their histograms; ``lag_curve.png``
shows the scales scored now.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

import configs
from syncers.data import face, prepare
from syncers.data import landmarks as landmarker
from syncers.data.dataset import (
    Clip,
    load_split,
    read_clip,
    read_manifest,
    write_clip,
    write_manifest,
)
from syncers.data.layout import FEATURES_PER_FRAME, FPS
from syncers.data.pyramid import SEGMENT_FRAMES
from syncers.metrics import MAX_OFFSET, MIN_OVERLAP, overlap_counts, pair_metrics
from syncers.run import config as config_lib
from syncers.run.errors import InputError
from syncers.run.rundir import atomic_write, locked, read_json
from syncers.sampling import motion_features
from syncers.train import SyncersConfig, load_run, train_and_evaluate

DEFAULT_CONFIG = configs.path("analyze.yaml")
MAX_SCALES = 4
MAX_POINTS = 1000           # --points indices: far above any landmark set's 68 or 98 points
DEFAULT_FOLDS = 5           # fewer when the data has fewer speakers
PERMUTATIONS = 10_000       # re-pairings per p-value: p resolves down to 1e-4
LENGTH_RUNGS = 4            # clips cut to a scale's need × 1, 2, 4 or 8
MAX_GROUP = 64              # clips whose pairs are all scored together (memory: G² pairs)
# Shifted-audio control: the audio of the same clip from this many frames of the scale later,
# so that the true alignment (δ = −20) and every window overlapping it lie outside ±15.
SHIFT_LEVEL_FRAMES = MAX_OFFSET + SEGMENT_FRAMES
FRAME_MS = 1000.0 / FPS     # one level-1 frame


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


def offset_summary(offsets: Sequence[float]) -> dict[str, float]:
    """``{"av_off_mean", "av_off_std"}`` of |AV-Off| (frames of the scale)."""
    magnitude = np.abs(np.asarray(offsets, np.float64))
    return {"av_off_mean": float(magnitude.mean()), "av_off_std": float(magnitude.std())}


# --------------------------------------------------------------------------- speakers and folds

def video_root(clips: Sequence[Clip]) -> Path | None:
    """The folder the clips' source videos were prepared from: the common folder of their
    ``meta["source"]`` paths (None when no clip names a video)."""
    folders = [str(Path(str(c.meta["source"])).parent) for c in clips
               if (c.meta or {}).get("source") not in (None, "phantom")]
    return Path(os.path.commonpath(folders)) if folders else None


def speaker_of(clip: Clip, table: dict[str, str] | None,
               root: Path | None = None) -> tuple[str, str]:
    """``(speaker, rule)`` of a clip: its video's row in ``--speakers`` (``"table"``), the
    clip's own ``meta["speaker"]`` (``"meta"``), one speaker per phantom clip (``"phantom"``:
    each phantom clip draws its own face and voice), else as ``msync data prepare`` splits: the
    speaker folder under ``root`` (:func:`video_root`; ``"folder"``, VoxCeleb's
    ``id/video/clip.mp4``) or the file name up to its last ``_`` (``"file name"``; the clip id
    when the clip names no video)."""
    meta = clip.meta or {}
    source = meta.get("source")
    if source == "phantom":
        return clip.clip_id, "phantom"
    video = Path(str(source)) if source else None
    if table and video is not None and video.name in table:
        return table[video.name], "table"
    if meta.get("speaker"):
        return str(meta["speaker"]), "meta"
    if video is None:
        video = Path(clip.clip_id)
    rule = "folder" if root is not None and video.parent != root else "file name"
    return prepare.speaker_of(video, "speaker", root if rule == "folder" else None), rule


def grouping_warnings(speakers: dict[str, str], rules: dict[str, str]) -> list[str]:
    """Why a speaker grouping looks implausible (``speakers``: clip id → speaker; ``rules``:
    clip id → how its speaker was found, :func:`speaker_of`), in words.

    One group holding more than half of the clips, found by the file-name or folder rule, is
    how different people sharing a prefix become one speaker (a folder of
    ``interview_001.mp4``, ``interview_002.mp4`` … of different guests); with folds by speaker
    such a group is trained on or scored as one. A grouping the user gave (``--speakers``,
    ``meta``) is taken as given."""
    counts: dict[str, int] = {}
    for speaker in speakers.values():
        counts[speaker] = counts.get(speaker, 0) + 1
    biggest, size = max(counts.items(), key=lambda item: item[1])
    how = {rules[c] for c, s in speakers.items() if s == biggest}
    if len(speakers) < 4 or size <= len(speakers) / 2 or not how & {"file name", "folder"}:
        return []
    return [f"speaker {biggest!r} (from the {' and '.join(sorted(how))} rule) holds {size} of "
            f"the {len(speakers)} clips; if these are different people, pass --speakers "
            "TABLE.tsv (columns file, speaker)"]


def assign_folds(speakers: dict[str, str], folds: int) -> dict[str, int]:
    """Clip id → fold in ``0..folds-1``: every speaker's clips in one fold, folds balanced by
    clip count (largest speaker first into the emptiest fold; ties by a hash of the name, so
    the assignment depends on the speakers, not on the order the clips were read)."""
    groups: dict[str, list[str]] = {}
    for clip_id, speaker in sorted(speakers.items()):
        groups.setdefault(speaker, []).append(clip_id)
    if len(groups) < folds:
        raise ValueError(f"{len(groups)} speakers cannot fill {folds} folds")
    order = sorted(groups, key=lambda s: (-len(groups[s]),
                                          hashlib.sha256(s.encode()).hexdigest()))
    load = [0] * folds
    fold_of = {}
    for speaker in order:
        fold = min(range(folds), key=lambda f: (load[f], f))
        load[fold] += len(groups[speaker])
        for clip_id in groups[speaker]:
            fold_of[clip_id] = fold
    return fold_of


def default_folds(speakers: dict[str, str]) -> int:
    """The most folds up to :data:`DEFAULT_FOLDS` whose every fold holds 2 clips at least
    (a fold of one clip has no other clip's audio to compare with); 2 when none does."""
    for folds in range(min(DEFAULT_FOLDS, len(set(speakers.values()))), 2, -1):
        if min(np.bincount(list(assign_folds(speakers, folds).values()))) >= 2:
            return folds
    return 2


# --------------------------------------------------------------------------- joined recordings

def read_recordings(path: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """A ``file``/``recording``/``part`` TSV (other columns ignored) → ``{file name:
    (recording, part)}``: the videos that are pieces of one longer recording, ``part`` their
    order in it (integers; consecutive pieces have consecutive parts)."""
    rows = prepare.read_table(path, "recordings table", ("file", "recording", "part"))
    table: dict[str, tuple[str, int]] = {}
    for line, row in rows:
        try:
            part = int(row["part"])
        except (TypeError, ValueError):
            raise InputError(path, f"line {line}: part {row['part']!r} is not an integer") \
                from None
        table[Path(row["file"]).name] = (row["recording"], part)
    return table


def join_frames(scales: int) -> int:
    """The longest span any scale up to ``scales`` scores: the coarsest scale's need × 8
    (:data:`LENGTH_RUNGS`; 776 frames, 31.04 s, at 800 ms). Joined clips grow to it."""
    return frames_needed(scales) * 2 ** (LENGTH_RUNGS - 1)


def _crop_frame(meta: dict) -> tuple[float, float, float, int] | None:
    """``(left, top, side, size)`` of the crop a prepared clip's points are normalised to
    (its ``meta`` face box, cropped as ``msync data prepare`` crops), None without one."""
    if "face_box" not in meta or "crop_size" not in meta:
        return None
    left, top, right, _ = face.crop_box(tuple(float(v) for v in meta["face_box"]))
    return float(left), float(top), float(right - left), int(meta["crop_size"])


def _into_frame(points: np.ndarray, frame, target) -> np.ndarray:
    """``[..., 2]`` crop-normalised points of the crop ``frame`` → those of the crop
    ``target`` (both :func:`_crop_frame`), through source pixels."""
    (left, top, side, size), (left0, top0, side0, size0) = frame, target
    origin, origin0 = np.array([left, top]), np.array([left0, top0])
    source = origin + landmarker.to_pixels(points, size).astype(np.float64) * side / size
    return landmarker.to_crop_coords((source - origin0) * size0 / side0,
                                         size0).astype(np.float32)


def join_pieces(pieces: Sequence[Clip]) -> Clip:
    """One clip of ``pieces`` in order: motion, audio features and landmarks concatenated.

    The pieces' points are carried into the first piece's crop (the crops of prepared pieces
    differ: each piece's face box is its own), so a join moves the points only by what the
    head moved across the cut; pieces without a crop (``face_box``, ``crop_size``) are
    concatenated as they are. Jacobians are concatenated unchanged (the analysis reads
    positions only). Its id is the first piece's with ``__{n}pieces``; ``meta`` the first
    piece's, with ``"pieces"``: the pieces' clip ids."""
    frames = [_crop_frame(p.meta or {}) for p in pieces]
    target = frames[0] if all(frames) else None

    def carried(points: np.ndarray, frame) -> np.ndarray:
        return points if target is None else _into_frame(points, frame, target)

    keypoints = []
    for piece, frame in zip(pieces, frames):
        kp = np.array(piece.keypoints, np.float32)
        kp[..., :2] = carried(kp[..., :2], frame)
        keypoints.append(kp)
    landmarks = None
    if all(p.landmarks is not None for p in pieces):
        landmarks = np.concatenate([carried(np.asarray(p.landmarks, np.float32), frame)
                                    for p, frame in zip(pieces, frames)])
    meta = dict(pieces[0].meta or {}) | {"pieces": [p.clip_id for p in pieces]}
    return Clip(clip_id=f"{pieces[0].clip_id}__{len(pieces)}pieces",
                keypoints=np.concatenate(keypoints),
                audio_features=np.concatenate([p.audio_features for p in pieces]),
                landmarks=landmarks, meta=meta)


def join_consecutive(clips: Sequence[Clip], recordings: dict[str, tuple[str, int]],
                     max_frames: int) -> tuple[list[Clip], dict[str, list[str]]]:
    """``(clips, joined)``: the clips whose source videos ``recordings`` lists
    (:func:`read_recordings`) joined, per recording in part order, into clips of consecutive
    parts that grow until they reach ``max_frames`` (:func:`join_frames`; the last of a run may
    be shorter), by :func:`join_pieces`; ``joined``: joined clip id → the pieces' ids. A gap in
    the parts starts a new clip. Clips the table does not list are kept as they are."""
    kept, runs = [], {}
    for clip in clips:
        source = (clip.meta or {}).get("source")
        entry = recordings.get(Path(str(source)).name) if source else None
        if entry is None:
            kept.append(clip)
            continue
        recording, part = entry
        runs.setdefault(recording, []).append((part, clip))
    joined: dict[str, list[str]] = {}
    for recording, parts in sorted(runs.items()):
        parts.sort(key=lambda item: item[0])
        for (a, first), (b, second) in zip(parts, parts[1:]):
            if a == b:
                raise InputError("--recordings", f"recording {recording!r} lists part {a} "
                                                 f"twice ({first.clip_id}, {second.clip_id})")
        run: list[tuple[int, Clip]] = []
        for part, clip in parts + [(None, None)]:
            if run and (clip is None or part != run[-1][0] + 1 or
                        sum(c.n_frames for _, c in run) >= max_frames):
                pieces = [c for _, c in run]
                if len(pieces) == 1:
                    kept.append(pieces[0])
                else:
                    whole = join_pieces(pieces)
                    joined[whole.clip_id] = [c.clip_id for c in pieces]
                    kept.append(whole)
                run = []
            if clip is not None:
                run.append((part, clip))
    return kept, joined


# --------------------------------------------------------------------------- clip lengths

def frames_needed(scale: int) -> int:
    """The shortest clip (video frames) that keeps ``MIN_OVERLAP`` pairs at every offset."""
    return next(n for n in range(1, 100_000) if overlap_counts(n, scale).min() >= MIN_OVERLAP)


def scoring_groups(lengths: dict[str, int], scale: int) -> tuple[list[tuple[int, list[str]]],
                                                                dict[str, str]]:
    """``(groups, dropped)`` for one fold's clips (``lengths``: clip id → frames) at ``scale``.

    A group is ``(frames, clip ids)``: clips cut to the same length (the scale's need × 1, 2,
    4 or 8, the longest the clip reaches), so that a clip's own audio and the other members'
    audio are scored over the same span; a rung with one clip joins the rung below (the
    lowest, with one clip, takes the next rung's shortest clip down to it, or both of a pair),
    and groups hold at most :data:`MAX_GROUP` clips. ``dropped`` says why a clip is not scored."""
    need = frames_needed(scale)
    dropped = {c: f"too short for {segment_ms(scale)} ms: {n / FPS:.2f} s < {need / FPS:.2f} s"
               for c, n in lengths.items() if n < need}
    rungs: dict[int, list[str]] = {}
    for clip_id, n in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        if n >= need:
            rung = max(j for j in range(LENGTH_RUNGS) if need * 2 ** j <= n)
            rungs.setdefault(rung, []).append(clip_id)
    for rung in sorted(rungs, reverse=True):
        if len(rungs[rung]) == 1 and rung > 0:
            rungs.setdefault(rung - 1, []).extend(rungs.pop(rung))
    lowest = min(rungs, default=None)
    if lowest is not None and len(rungs[lowest]) == 1 and len(rungs) > 1:
        # A lone shortest clip still has partners in the next rung, cut to its length: its
        # shortest clip, or both where taking one would leave the other alone. The rest keep
        # their longer span.
        partners = rungs[min(r for r in rungs if r != lowest)]
        moved = partners[:] if len(partners) <= 2 else partners[:1]
        rungs[lowest].extend(moved)
        del partners[:len(moved)]
        rungs = {r: m for r, m in rungs.items() if m}
    groups = []
    for rung, members in sorted(rungs.items()):
        if len(members) == 1:
            dropped[members[0]] = (f"the only clip of its fold long enough for "
                                   f"{segment_ms(scale)} ms: no other clip's audio to compare")
            continue
        chunks = -(-len(members) // MAX_GROUP)
        for chunk in np.array_split(np.array(members), chunks):
            groups.append((need * 2 ** rung, [str(c) for c in chunk]))
    return groups, dropped


def segment_ms(scale: int) -> int:
    return int(200 * 2 ** (scale - 1))


# --------------------------------------------------------------------------- statistics

def permutation_p(groups: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
                  permutations: int = PERMUTATIONS) -> float:
    """One-sided p-value that the pairs as recorded are closer to sync than re-paired ones.

    ``groups``: ``(offsets [R, C], own [R])`` — |AV-Off| of motion r with audio c of a group,
    and the column of each row's own audio. The statistic is the mean |AV-Off| of the own
    pairs over all rows; its null distribution re-pairs each group's audio by uniformly random
    permutations. Under the null — motion independent of the speech it came with — the
    recorded pairing is one more draw from that distribution, so the test is exact whatever
    the syncers learnt or how offsets depend on one another:
    ``(1 + #{null <= observed}) / (1 + permutations)``. (Permutations, not derangements: the
    recorded pairing is itself no derangement, and in a group of 2 or 3 clips excluding it
    would make a coin flip look significant.)"""
    rows = sum(len(own) for _, own in groups)
    if rows == 0:
        raise ValueError("no pairs to test")
    observed = sum(float(off[np.arange(len(own)), own].sum()) for off, own in groups) / rows
    null = np.zeros(permutations)
    for off, own in groups:
        perm = np.argsort(rng.random((permutations, off.shape[1])), axis=1)   # [P, C]
        null += off[np.arange(len(own))[None, :], perm[:, own]].sum(axis=1)
    null /= rows
    return float((1 + np.count_nonzero(null <= observed + 1e-9)) / (1 + permutations))


# --------------------------------------------------------------------------- the analysis

def analyze(data: str | os.PathLike, out: str | os.PathLike, points: Sequence[int],
            scales: int = 3, generated: str | os.PathLike | None = None,
            folds: int | None = None, config_path: str | os.PathLike | None = None,
            overrides: Sequence[str] = (), speakers: str | os.PathLike | None = None,
            started: float | None = None, warn=None,
            recordings: str | os.PathLike | None = None) -> dict:
    """Run the whole protocol (module docstring); returns the ``report.json`` dict.

    ``recordings``: a ``file``/``recording``/``part`` table (:func:`read_recordings`); the
    clips it lists are joined into longer clips of consecutive parts first
    (:func:`join_consecutive`).

    ``started``: the command's ``time.perf_counter()`` at its start (the report's wall time
    then includes preparing ``--videos``); ``warn(text)`` receives the grouping warnings
    (default: stderr)."""
    start = time.perf_counter() if started is None else started
    warn = warn or (lambda text: print(f"msync: warning: {text}", file=sys.stderr))
    if not 1 <= scales <= MAX_SCALES:
        raise InputError("--scales", f"expected 1 to {MAX_SCALES} scales (200 to "
                                     f"{200 * 2 ** (MAX_SCALES - 1)} ms); got {scales}")
    if folds is not None and folds < 2:
        raise InputError("--folds", f"cross-validation needs at least 2 folds; got {folds}")
    if not points:
        raise InputError("--points", "no points given")
    if recordings is not None and generated is not None:
        raise InputError("--recordings", "joined clips have no generated motion of the same "
                                         "id; analyse --generated without --recordings")
    out = Path(out)
    manifest = read_manifest(data)
    clips = [c for name in manifest.splits for c in load_split(manifest.root, name, manifest)]
    if len(clips) < 2:
        raise InputError(manifest.root / "manifest.json", f"holds {len(clips)} clip(s); the "
                                                          "analysis needs 2 speakers at least")
    source = motion_source(clips)
    check_points(points, clips[0], source)
    table = prepare.read_speakers(speakers) if speakers else None
    root = video_root(clips)
    joined: dict[str, list[str]] = {}
    if recordings is not None:
        piece_speaker = {c.clip_id: speaker_of(c, table, root)[0] for c in clips}
        clips, joined = join_consecutive(clips, read_recordings(recordings), join_frames(scales))
        for clip_id, pieces in joined.items():
            if len({piece_speaker[p] for p in pieces}) > 1:
                raise InputError("--recordings", f"the pieces joined into {clip_id} have "
                                                 f"different speakers: "
                                                 f"{sorted({piece_speaker[p] for p in pieces})}")
    who = {c.clip_id: speaker_of(c, table, root) for c in clips}
    speaker = {clip_id: s for clip_id, (s, _) in who.items()}
    rules = {rule for _, rule in who.values()}
    n_speakers = len(set(speaker.values()))
    warnings = grouping_warnings(speaker, {c: rule for c, (_, rule) in who.items()})
    for text in warnings:
        warn(text)
    if n_speakers < 2:
        raise InputError("--speakers" if table else manifest.root,
                         f"all {len(clips)} clips are one speaker ({next(iter(speaker.values()))!r}"
                         f", by {' and '.join(sorted(rules))}): cross-validation by speaker needs "
                         "2 at least (pass --speakers TABLE.tsv if they are different people)")
    folds = folds or default_folds(speaker)
    if folds > n_speakers:
        raise InputError("--folds", f"{folds} folds need {folds} speakers; the data has "
                                    f"{n_speakers} (by {' and '.join(sorted(rules))})")
    fold_of = assign_folds(speaker, folds)
    by_id = {c.clip_id: c for c in clips}
    if not any(scoring_groups({c: by_id[c].n_frames for c, f in fold_of.items() if f == fold},
                              1)[0] for fold in range(folds)):
        raise InputError(manifest.root, f"no fold has 2 clips of {frames_needed(1) / FPS:g} s "
                                        f"or more (what {segment_ms(1)} ms needs); the "
                                        f"longest is {max(c.n_frames for c in clips) / FPS:g} s")
    matched = None if generated is None else _generated_clips(generated, clips, source, manifest)
    levels = tuple(range(1, scales + 1))
    # The syncers' config is read (keys, types, ranges) before anything is written.
    overrides = [*overrides, "data.motion=landmarks",
                 f"data.points=[{','.join(map(str, points))}]",
                 f"train.levels=[{','.join(map(str, levels))}]"]
    config = config_lib.load(SyncersConfig, config_path or DEFAULT_CONFIG, overrides)
    rng = np.random.default_rng(config.train.seed)

    # OUT/.lock for the rest: a second analysis into this --out is refused (its syncers
    # would train in the same run directory).
    with locked(out):
        kinds = ("gt", "random", "shifted") + (("generated",) if matched else ())
        found = {s: {kind: [] for kind in kinds} for s in levels}     # |AV-Off| values
        tests = {s: {kind: [] for kind in kinds} for s in levels}     # permutation groups
        curves = {s: {kind: [] for kind in kinds} for s in levels}
        used = {s: [] for s in levels}
        frames = {s: set() for s in levels}
        dropped: dict[int, dict[str, str]] = {s: {} for s in levels}
        train_seconds = 0.0
        for fold in range(folds):
            held = sorted(c for c, f in fold_of.items() if f == fold)
            train = [by_id[c] for c in sorted(fold_of) if fold_of[c] != fold]
            fold_dir = out / f"fold{fold + 1}"
            rigid_root = _write_rigid(fold_dir / "rigid", manifest, train, source)
            # The path is set directly: through YAML an escaped emoji comes back as two
            # surrogates.
            fold_config = dataclasses.replace(config, data_root=str(rigid_root))
            trained_at = time.perf_counter()
            train_and_evaluate(fold_config, fold_dir / "syncers")
            run = load_run(fold_dir / "syncers", levels)
            train_seconds += time.perf_counter() - trained_at
            lengths = {c: by_id[c].n_frames for c in held}
            for scale in levels:
                groups, why = scoring_groups(lengths, scale)
                dropped[scale].update(why)
                for length, members in groups:
                    group = [by_id[c] for c in members]
                    used[scale] += members
                    frames[scale].add(length)
                    scored = _score_group(run, scale, group, length, source, fold_config,
                                          matched)
                    for kind, (off, own, dist) in scored.items():
                        if kind != "random":
                            tests[scale][kind].append((off, own))
                        if kind == "random":
                            values = off[~np.eye(*off.shape, dtype=bool)]
                            curve = dist[~np.eye(*off.shape, dtype=bool)]
                        else:
                            values = off[np.arange(len(own)), own]
                            curve = dist[np.arange(len(own)), own]
                        found[scale][kind].append(values)
                        curves[scale][kind].append(curve)

        report_scales, not_scored = {}, {}
        for scale in levels:
            if not used[scale]:
                not_scored[str(scale)] = {"n_clips": 0, "dropped": dropped[scale]}
                continue
            entry = {kind: offset_summary(np.concatenate(found[scale][kind]))
                     for kind in kinds if found[scale][kind]}
            entry["p_gt_vs_random"] = permutation_p(tests[scale]["gt"], rng)
            for kind in ("generated", "shifted"):
                if tests[scale].get(kind):
                    entry[f"p_{kind}_vs_random"] = permutation_p(tests[scale][kind], rng)
            entry.update(n_clips=len(used[scale]),
                         n_random_pairs=int(sum(len(v) for v in found[scale]["random"])),
                         n_shifted=int(sum(len(v) for v in found[scale]["shifted"])),
                         clip_frames=sorted(frames[scale]), dropped=dropped[scale])
            if matched:
                entry["n_generated"] = int(sum(len(v) for v in found[scale]["generated"]))
            report_scales[str(scale)] = entry
        report = {"scales": report_scales, "not_scored": not_scored,
                  "points": [int(p) for p in points],
                  "n_clips": len(clips), "folds": folds,
                  "speakers": {"n": n_speakers, "rule": sorted(rules), "warnings": warnings,
                               "table": None if table is None else str(Path(speakers).resolve())},
                  "joined": joined or None,
                  "generated": None if generated is None else str(Path(generated).resolve())}
        report = _keep_other_scales(report, out / "report.json")
        report["seconds"] = time.perf_counter() - start
        report["train_seconds"] = train_seconds
        details = {"data": str(manifest.root), "source": source, "steps": config.train.steps,
                   "objective": config.objective.name}
        atomic_write(out / "report.json", json.dumps(report, indent=1) + "\n")
        atomic_write(out / "report.md", markdown(report, details))
        offsets = {s: {k: np.concatenate(v) for k, v in found[s].items() if v}
                   for s in levels if used[s]}
        plot_offsets(offsets, out)
        plot_lag_curves({s: {k: np.concatenate(v).mean(axis=0) for k, v in curves[s].items() if v}
                         for s in levels if used[s]}, out)
    return report


def _score_group(run, scale: int, group: list[Clip], length: int, source: str,
                 config: SyncersConfig, matched: dict[str, Clip] | None) -> dict[str, tuple]:
    """``{kind: (|AV-Off| [R, C], own [R], distances [R, C, 2D+1])}`` of one group at one
    scale, the clips cut to ``length`` frames: ``gt`` and ``random`` (the same matrix: the
    group's motion against the group's audio; random pairs are its off-diagonal),
    ``generated`` (the generated motion of the clips that have one, against the group's audio)
    and ``shifted``: each clip's audio from :data:`SHIFT_LEVEL_FRAMES` level frames later,
    beyond the offsets searched, over ``length`` minus the shift (the scale's need at least),
    for the clips long enough."""
    def motion(clip: Clip, frames: int = length) -> np.ndarray:
        return motion_features(as_rigid(clip, source), config.data)[:frames]

    def audio(clip: Clip, frames: int = length, start: int = 0) -> np.ndarray:
        return clip.audio_features[FEATURES_PER_FRAME * start:
                                   FEATURES_PER_FRAME * (start + frames)]

    def offsets(motion_RxTxM, audio_CxAxF):
        result = pair_metrics(run.params[scale], np.stack(motion_RxTxM).astype(np.float32),
                              np.stack(audio_CxAxF).astype(np.float32), model=run.model,
                              level=scale, kind=run.config.data.pyramid_kind,
                              k=run.config.data.pyramid_k, score=run.info["score"])
        return np.abs(np.asarray(result["av_off"])), np.asarray(result["distances"])

    everyone = np.arange(len(group))
    off, dist = offsets([motion(c) for c in group], [audio(c) for c in group])
    out = {"gt": (off, everyone, dist), "random": (off, everyone, dist)}
    shift = SHIFT_LEVEL_FRAMES * 2 ** (scale - 1)
    frames = max(frames_needed(scale), length - shift)
    long_enough = [c for c in group if c.n_frames >= frames + shift]
    if len(long_enough) >= 2:
        off, dist = offsets([motion(c, frames) for c in long_enough],
                            [audio(c, frames, shift) for c in long_enough])
        out["shifted"] = (off, np.arange(len(long_enough)), dist)
    if matched:
        rows = [(i, matched[c.clip_id]) for i, c in enumerate(group)
                if c.clip_id in matched and matched[c.clip_id].n_frames >= length]
        if rows:
            off, dist = offsets([motion(g) for _, g in rows], [audio(c) for c in group])
            out["generated"] = (off, np.array([i for i, _ in rows]), dist)
    return out


def _keep_other_scales(report: dict, path: Path) -> dict:
    """``report`` with the scales of the previous ``report.json`` at ``path`` that this run did
    not score (an analysis rerun with fewer ``--scales``), when that report scored the same
    points, folds, speakers, generated motion and joined clips; each entry says on how many
    clips of how many frames it was measured."""
    previous = read_json(path)
    same = all(previous.get(key) == report[key]
               for key in ("points", "folds", "speakers", "generated", "joined"))
    kept = previous.get("scales") if same else None
    if not isinstance(kept, dict):
        return report
    scales = {k: v for k, v in kept.items()
              if k not in report["scales"] and k not in report["not_scored"]} | report["scales"]
    return report | {"scales": dict(sorted(scales.items(), key=lambda item: int(item[0])))}


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
        raise InputError(root.parent.parent, "holds an analysis of other data, clips or folds "
                                             "(its syncers would resume on them); use a new "
                                             "--out")
    for clip in clips:
        rigid = as_rigid(clip, source)
        write_clip(root, "train", clip.clip_id, rigid.keypoints, rigid.audio_features,
                   meta=clip.meta, landmarks=rigid.landmarks)
    write_manifest(root, {"train": [(c.clip_id, c.n_frames) for c in clips]},
                   manifest.keypoint_space, manifest.features, manifest.fps, extra=stamp)
    return root


def _generated_clips(root, clips: list[Clip], source: str, manifest) -> dict[str, Clip]:
    """``{clip id: generated clip}`` for the clips of the data that ``root`` has (any split)."""
    gen_manifest = read_manifest(root)
    if gen_manifest.keypoint_space != manifest.keypoint_space:
        raise InputError(Path(root) / "manifest.json",
                         f"keypoint_space {gen_manifest.keypoint_space!r} differs from the "
                         f"data's {manifest.keypoint_space!r}")
    where = {info.clip_id: split for split, infos in gen_manifest.splits.items()
             for info in infos}
    matched = {}
    for clip in clips:
        if clip.clip_id not in where:
            continue
        gen = read_clip(gen_manifest.root, where[clip.clip_id], clip.clip_id)
        if source == "landmarks" and gen.landmarks is None:
            raise InputError(Path(root) / where[clip.clip_id] / f"{clip.clip_id}.npz",
                             "has no landmarks, but the analysis runs on landmarks")
        matched[clip.clip_id] = gen
    if not matched:
        raise InputError(root, f"no generated clip shares an id with the {len(clips)} clips of "
                               f"the data (e.g. {clips[0].clip_id!r})")
    return matched


# --------------------------------------------------------------------------- outputs

def markdown(report: dict, details: dict) -> str:
    scales = report["scales"]
    extra = [k for k in ("generated", "shifted") if any(k in e for e in scales.values())]
    head = "| scale | segment | clips | GT | random | " + \
        "".join(f"{k} | " for k in extra) + "p GT vs random | " + \
        "".join(f"p {k} vs random | " for k in extra)
    speakers = report["speakers"]
    lines = [
        "# Speech/head-motion analysis (the paper's Table 2 protocol)", "",
        f"{report['n_clips']} clips of `{details['data']}` from {speakers['n']} speakers "
        f"(grouped by {' and '.join(speakers['rule'])}), scored by {report['folds']}-fold "
        "cross-validation: every clip once, by syncers trained on the other folds, which never "
        f"saw its speaker. Points {_ranges(report['points'])} of the {details['source']} "
        f"(2-D positions, centred per clip); one `{details['objective']}` syncer per scale and "
        f"fold, {details['steps']} steps.", ""]
    if report.get("joined"):
        pieces = sum(len(p) for p in report["joined"].values())
        lines += [f"{pieces} clips that are consecutive pieces of one recording (`--recordings`) "
                  f"are joined into {len(report['joined'])} (report.json lists them).", ""]
    lines += [f"**Warning:** {text}." for text in speakers["warnings"]]
    lines += [""] if speakers["warnings"] else []
    lines += [head.rstrip(), "|" + "---|" * (head.count("|") - 1)]
    for scale, entry in scales.items():
        row = [scale, f"{segment_ms(int(scale))} ms", str(entry["n_clips"]),
               _pm(entry["gt"]), _pm(entry["random"])]
        row += [_pm(entry[k]) if k in entry else "–" for k in extra]
        row.append(f"{entry['p_gt_vs_random']:.2g}")
        row += [f"{entry[f'p_{k}_vs_random']:.2g}" if f"p_{k}_vs_random" in entry else "–"
                for k in extra]
        lines.append("| " + " | ".join(row) + " |")
    lines += [""]
    accounted = sorted({**report["scales"], **report.get("not_scored", {})}.items(),
                       key=lambda item: int(item[0]))
    for scale, entry in accounted:
        reasons: dict[str, int] = {}
        for why in entry.get("dropped", {}).values():
            reason = why.split(":")[0]
            reasons[reason] = reasons.get(reason, 0) + 1
        used = (f"{entry['n_clips']} clips scored, cut to "
                f"{', '.join(f'{n / FPS:g}' for n in entry['clip_frames'])} s"
                if entry.get("n_clips") else "no clip scored")
        not_used = "; ".join(f"{n} {reason}" for reason, n in reasons.items())
        lines.append(f"- {segment_ms(int(scale))} ms: {used}"
                     + (f"; not scored: {not_used} (report.json lists them)" if not_used else "")
                     + ".")
    lines += ["", "Cells: mean ± std of |AV-Off| (SyncNet protocol, offsets in "
                  f"[-{MAX_OFFSET}, {MAX_OFFSET}] frames of the scale; a frame of scale s lasts "
                  "40·2^(s−1) ms). GT: each clip's motion with its own audio. Random: its "
                  "motion with the audio of every other clip of its fold cut to the same "
                  "length. "
                  f"Shifted (a control): its own audio from {SHIFT_LEVEL_FRAMES} frames of the "
                  "scale later, beyond the offsets searched, on the clips long enough. p: "
                  f"permutation test ({PERMUTATIONS} random re-pairings of the audio within "
                  "each group of clips of a fold): how often re-paired clips are as close to "
                  "sync as the pairs were recorded."]
    if "generated" in extra:
        lines.append("Generated: the motion of the same clip id in the generated set with "
                     "the clip's audio (and, for its p, with the other clips' audio).")
    lines += ["", f"Syncer training {report['train_seconds']:.0f} s; the whole command "
                  f"{report['seconds']:.0f} s.", ""]
    lines += [f"![AV-Off histograms, scale {s}](offsets_scale{s}.png)" for s in scales]
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


_COLOURS = {"gt": "tab:blue", "random": "tab:gray", "generated": "tab:orange",
            "shifted": "tab:green"}


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
    [--scales 3] [--folds K] [--speakers TABLE.tsv] [--recordings TABLE.tsv]``; with
    ``--videos`` the folder is prepared into ``OUT/dataset`` first (``msync data prepare``'s
    defaults: dlib landmarks; resumable)."""
    started = time.perf_counter()
    points = parse_points(args.points)
    data = args.data
    if data is None and args.generated:
        raise InputError("--generated", "compare generated motion with --data (a prepared "
                                        "dataset), not --videos")
    speakers = getattr(args, "speakers", None)
    # OUT is locked from the start with --videos (OUT/dataset is prepared first), else by
    # analyze() once the inputs are read.
    with locked(args.out) if data is None else contextlib.nullcontext():
        if data is None:
            data = Path(args.out) / "dataset"
            prepared = prepare.prepare_dataset(
                args.videos, data, prepare.PrepareOptions(speakers=speakers),
                workers=getattr(args, "workers", 1))
            print(f"msync: prepared {len(prepared['prepared'])} video(s) "
                  f"({prepared['already_done']} already done, {len(prepared['skipped'])} "
                  f"skipped: see {data / 'prepare_report.json'})", file=sys.stderr)
        report = analyze(data, args.out, points, args.scales, args.generated,
                         getattr(args, "folds", None), getattr(args, "config", None),
                         getattr(args, "overrides", None) or (), speakers, started,
                         recordings=getattr(args, "recordings", None))
    parts = [f"{segment_ms(int(scale))} ms GT {entry['gt']['av_off_mean']:.2f} / random "
             f"{entry['random']['av_off_mean']:.2f} (p={entry['p_gt_vs_random']:.2g}, "
             f"{entry['n_clips']} clips)" for scale, entry in report["scales"].items()]
    parts += [f"{segment_ms(int(scale))} ms: no clip long enough"
              for scale in report.get("not_scored", {})]
    print(f"msync: mean |AV-Off| {'; '.join(parts)}; {report['folds']} folds, "
          f"{report['seconds']:.0f} s -> {args.out}", file=sys.stderr)
