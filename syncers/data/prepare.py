"""Data preparation: real talking-head videos → an msync dataset (docs/design.md, "Data flow");
``msync data prepare`` (``motion.app.prepare``) is its command.

Per video: decode at 25 fps, extract the 16 kHz audio, find one face box for the whole clip (the
median of dlib detections on a dozen frames (``syncers.data.face.track_box``), so the crop does not
jitter), crop every frame to
256×256 around it, track the 68 landmarks on the crops (``syncers.data.landmarks.track``: dlib by
default, ``--landmarker face-alignment`` where its weights are present), compute the audio
features and write the clip in the dataset format of ``syncers.data.dataset``. The keypoints are
the ``landmarks-v1`` encoding of the landmarks (``syncers.data.landmark_space``), or FOMM's
detector on the crops with ``--fomm-checkpoint`` (``fomm-vox256``; the detector lives in the
renderer's package, so the command passes its loader in: ``PrepareOptions.fomm_detector``);
``--flip`` also stores the keypoints of the mirrored video.

Splits are by speaker: the speaker is the ``speaker`` column of ``--speakers TABLE.tsv`` (a
``file``/``speaker`` table), else the file name up to its last ``_`` (``WDA_KatieHill_000`` →
``WDA_KatieHill``; ``--split-by clip`` uses the whole name), else the video's parent folder when
``--videos`` holds speaker folders (VoxCeleb's ``id/video/clip.mp4``). A stable hash of that key
picks the split (10 % test, 10 % val), so adding videos later never moves a clip between splits
and no speaker is in two splits; ``--split NAME`` puts every clip in one split.

Resumable: a clip whose npz exists is not recomputed, and a video refused once (no audio, no
face, too short, unreadable: ``refused/<clip>.json`` holds the reason) is not retried.
``--workers N`` prepares videos in N processes and ``--shard K/N`` takes every N-th video from
the K-th, so N machines (or a SLURM array) can share one collection; each shard writes its own
``prepare_report[.K-of-N].json`` and the manifest lists every clip present when it finishes
(a final run without ``--shard`` redoes nothing and writes the complete manifest).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from syncers.data import dataset, face, landmark_space
from syncers.data import landmarks as landmarker
from syncers.data import video as video_io
from syncers.data.features import (
    SAMPLES_PER_FRAME,
    audio_features,
    feature_config,
    feature_mismatch,
    load_audio,
    n_video_frames,
)
from syncers.data.layout import FOMM_SPACE, FPS, LANDMARK_SPACE
from syncers.run.errors import InputError, optional_import
from syncers.run.progress import bar as progress_bar

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
TRACK_SAMPLES = 12
FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"   # the file face-alignment looks for in torch hub
LANDMARKERS = ("dlib", "face-alignment")
REFUSED = "refused"


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    fomm_checkpoint: str | None = None
    fomm_config: str | None = None
    landmarker: str = "dlib"
    flip: bool = False
    split_by: str = "speaker"
    split: str | None = None                 # every clip into this split
    speakers: str | None = None              # a file/speaker TSV
    shard: tuple[int, int] = (1, 1)          # (K, N), K in 1..N
    min_seconds: float = 2.0
    fps: float = float(FPS)
    # (checkpoint, config) -> (frames [T, S, S, 3] in [0, 1] -> keypoints [T, 10, 6]); a
    # module-level function, so that worker processes can receive it.
    fomm_detector: Callable[[str, str | None], Callable[[np.ndarray], np.ndarray]] | None = \
        dataclasses.field(default=None, compare=False)

    @property
    def keypoint_space(self) -> str:
        return FOMM_SPACE if self.fomm_checkpoint else LANDMARK_SPACE


class Skip(Exception):
    """A video that cannot become a clip; the message is the reason in the report."""


def speaker_of(video: Path, split_by: str, root: Path | None = None,
               table: dict[str, str] | None = None) -> str:
    if table and video.name in table:
        return table[video.name]
    if root is not None and video.parent != root:
        return video.relative_to(root).parts[0]         # speaker folders
    if split_by == "speaker" and "_" in video.stem:
        return video.stem.rsplit("_", 1)[0]
    return video.stem


def split_of(video: Path, split_by: str, root: Path | None = None,
             table: dict[str, str] | None = None) -> str:
    key = speaker_of(video, split_by, root, table)
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def clip_id_of(video: Path, root: Path | None = None) -> str:
    name = video.stem if root is None or video.parent == root else \
        "__".join(video.relative_to(root).with_suffix("").parts)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return safe.lstrip("._-") or "clip"


def clip_ids(videos: list[Path], root: Path | None = None) -> dict[Path, str]:
    """Each video's clip id, unique by construction: :func:`clip_id_of`'s, and for videos that
    share one (``same.mp4`` and ``same.mov``; ``a b.mp4`` and ``a_b.mp4``) the first in sorted
    order keeps it and the others take ``-2``, ``-3``, ... (the first such id no other video
    has). The same folder always gives the same ids — every shard computes them over the
    whole folder."""
    base = {video: clip_id_of(video, root) for video in sorted(videos)}
    taken = set(base.values())
    ids, given = {}, set()
    for video, clip_id in base.items():
        if clip_id in given:
            n = 2
            while f"{clip_id}-{n}" in taken:
                n += 1
            clip_id = f"{clip_id}-{n}"
            taken.add(clip_id)
        given.add(clip_id)
        ids[video] = clip_id
    return ids


def check_existing(out: Path, options: PrepareOptions) -> None:
    """Refuse to prepare into a dataset of another keypoint space or feature config (the
    manifest's, else an existing clip's ``meta``): one dataset holds one kind of clip."""
    features = feature_config("logmel")
    manifest_path = out / dataset.MANIFEST
    if manifest_path.is_file():
        manifest = dataset.read_manifest(out)
        space, theirs, where = manifest.keypoint_space, manifest.features, manifest_path
    else:
        clips = [p for split in dataset.SPLITS for p in sorted((out / split).glob("*.npz"))]
        if not clips:
            return
        meta = dataset.read_clip(out, clips[0].parent.name, clips[0].stem).meta
        space, theirs, where = meta.get("keypoint_space"), meta.get("features"), clips[0]
    if space != options.keypoint_space:
        raise InputError(where, f"holds {space} clips; this prepare makes "
                                f"{options.keypoint_space} ones (one dataset holds one keypoint "
                                "space): use another --out")
    mismatch = feature_mismatch(theirs, features)
    if mismatch:
        raise InputError(where, f"holds clips of other audio features than prepare computes "
                                f"({mismatch}): use another --out")


def read_table(path: str | os.PathLike, what: str, columns: tuple[str, ...]
               ) -> list[tuple[int, dict]]:
    """``(line number, row)`` of a tab-separated table whose header holds ``columns`` (others
    ignored), rows without a ``file`` dropped; ``what`` ("speaker table") names it in the
    one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"no such {what}")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"not a readable TSV ({err})") from None
    if not rows or not set(columns) <= set(rows[0]):
        named = ", ".join(f"'{c}'" for c in columns[:-1]) + f" and '{columns[-1]}'"
        raise InputError(path, f"a {what} needs tab-separated columns {named}")
    return [(line, row) for line, row in enumerate(rows, start=2) if row.get("file")]


def read_speakers(path: str | os.PathLike) -> dict[str, str]:
    """A ``file``/``speaker`` TSV (other columns ignored) → ``{file name: speaker}``."""
    return {Path(row["file"]).name: row["speaker"]
            for _, row in read_table(path, "speaker table", ("file", "speaker"))}


def fan_weights_path() -> Path:
    # Deferred: torch is an optional dependency (msync[torch]), needed only for face-alignment.
    hub = optional_import("torch.hub", "--landmarker face-alignment")
    return Path(hub.get_dir()) / "checkpoints" / FAN_WEIGHTS


class _Worker:
    """Per-process models, loaded once (the landmarker and, if asked, the FOMM detector)."""

    def __init__(self, options: PrepareOptions):
        self.options = options
        self.fomm = None
        if options.fomm_checkpoint:
            self.fomm = options.fomm_detector(options.fomm_checkpoint, options.fomm_config)
        self.fan = None
        if options.landmarker == "face-alignment":
            # Deferred: face-alignment is an optional dependency (msync[torch]).
            face_alignment = optional_import("face_alignment", "--landmarker face-alignment")
            # The "folder" detector loads no weights: we pass our own face box instead.
            self.fan = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device="cpu", face_detector="folder",
                compile=False, flip_input=False)

    def prepare(self, video: Path, out: Path, split: str, clip_id: str) -> dict:
        options = self.options
        started = time.perf_counter()
        info = video_io.probe(video)
        if not info.has_audio:
            raise Skip("no audio track")
        samples = load_audio(video)
        # Two passes over the decoded frames, so that only 256² crops are ever held: a dozen
        # frames spread over the clip for the median face box, then the crops.
        expected = n_video_frames(samples.size)
        wanted = set(np.linspace(0, max(expected - 1, 0), TRACK_SAMPLES).astype(int).tolist())
        sampled, n_decoded = [], 0
        for index, frame in enumerate(video_io.iter_frames(video, options.fps)):
            n_decoded = index + 1
            if index in wanted:
                sampled.append(frame.copy())
        n_frames = min(n_decoded, expected)
        if n_frames < options.min_seconds * options.fps:
            raise Skip(f"too short: {n_frames / options.fps:.2f} s of audio and video "
                       f"(need {options.min_seconds:g} s)")
        box = face.track_box(np.stack(sampled), stride=1) if sampled else None
        if box is None:
            raise Skip("no face found")
        crops = _crops(video, box, n_frames, options.fps)
        try:
            track = landmarker.track(crops, options.fps) if self.fan is None else \
                landmarker.Track(self._fan_landmarks(crops), np.ones(n_frames, bool))
        except landmarker.FaceLost as err:
            raise Skip(str(err)) from None
        if self.fomm is not None:
            pixels = crops.astype(np.float32) / 255.0
            keypoints = self.fomm(pixels)
            flipped = self.fomm(pixels[:, :, ::-1]) if options.flip else None
        else:
            keypoints = landmark_space.encode(track.landmarks)
            flipped = landmark_space.encode(landmark_space.mirror(track.landmarks)) \
                if options.flip else None
        samples = samples[:n_frames * SAMPLES_PER_FRAME]
        meta = {"source": os.fspath(video), "fps": options.fps, "face_box": list(box),
                "keypoint_space": options.keypoint_space, "crop_size": int(crops.shape[1]),
                "features": feature_config("logmel"),
                "landmarker": options.landmarker,
                "frames_interpolated": int((~track.detected).sum())}
        dataset.write_clip(out, split, clip_id, keypoints, audio_features(samples),
                           samples=samples, meta=meta, landmarks=track.landmarks,
                           keypoints_flipped=flipped)
        return {"split": split, "n_frames": n_frames,
                "frames_interpolated": meta["frames_interpolated"],
                "seconds": time.perf_counter() - started}

    def _fan_landmarks(self, crops: np.ndarray) -> np.ndarray:
        size = crops.shape[1]
        box = [np.array([0.1 * size, 0.1 * size, 0.9 * size, 0.9 * size])]
        points = []
        for index, crop in enumerate(crops):
            found = self.fan.get_landmarks_from_image((crop * 255).astype(np.uint8),
                                                      detected_faces=box)
            if not found:
                raise Skip(f"face-alignment found no landmarks in frame {index}")
            points.append(found[0][:, :2])
        # face-alignment's pixel centres are integers, like dlib's: +0.5 to edge coordinates.
        return landmarker.to_crop_coords(np.stack(points) + 0.5, size)


CROP_CHUNK = 32


def _crops(video: Path, box, n_frames: int, fps: float) -> np.ndarray:
    """The first ``n_frames`` frames cropped around ``box``: ``[T, 256, 256, 3]`` uint8,
    decoded and cropped a chunk at a time."""
    crops, chunk = [], []

    def flush():
        if chunk:
            crops.append((face.crop_frames(np.stack(chunk), box) * 255.0 + 0.5).astype(np.uint8))
            chunk.clear()

    for index, frame in enumerate(video_io.iter_frames(video, fps)):
        if index >= n_frames:
            break
        chunk.append(frame)
        if len(chunk) == CROP_CHUNK:
            flush()
    flush()
    return np.concatenate(crops)


_WORKER: _Worker | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _WORKER  # one per worker process: the models load once, not once per video
    _WORKER = _Worker(options)


def _run_one(video: Path, out: Path, split: str, clip_id: str) -> tuple[str, Any]:
    try:
        return "ok", _WORKER.prepare(video, out, split, clip_id)
    except (Skip, InputError) as err:
        reason = str(err)
        refused = out / REFUSED / f"{clip_id}.json"
        refused.parent.mkdir(parents=True, exist_ok=True)
        refused.write_text(json.dumps({"video": os.fspath(video), "reason": reason}))
        return "skipped", reason


def find_videos(videos: Path) -> list[Path]:
    """The videos directly in ``videos`` or one or two folders down (speaker folders)."""
    if not videos.is_dir():
        raise InputError(videos, "no such directory of videos" if not videos.exists()
                         else "not a directory")
    found = sorted(p for pattern in ("*", "*/*", "*/*/*") for p in videos.glob(pattern)
                   if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not found:
        raise InputError(videos, f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in it")
    return found


def check_options(videos: Path, options: PrepareOptions) -> list[Path]:
    found = find_videos(videos)
    if options.split is not None and options.split not in dataset.SPLITS:
        raise InputError(None, f"--split must be one of {', '.join(dataset.SPLITS)}; "
                               f"got {options.split!r}")
    if options.fomm_checkpoint and not Path(options.fomm_checkpoint).exists():
        raise InputError(options.fomm_checkpoint, "no such FOMM checkpoint")
    if options.fomm_checkpoint and options.fomm_detector is None:
        raise InputError(options.fomm_checkpoint, "FOMM keypoints need a detector "
                                                  "(PrepareOptions.fomm_detector)")
    if options.landmarker not in LANDMARKERS:
        raise InputError(None, f"--landmarker must be one of {', '.join(LANDMARKERS)}")
    if options.landmarker == "face-alignment":
        # Fail here, not in a worker, when the optional face-alignment is not installed.
        optional_import("face_alignment", "--landmarker face-alignment")
        if not fan_weights_path().is_file():
            raise InputError(fan_weights_path(), "face-alignment weights not found; download "
                             f"{FAN_WEIGHTS} from face-alignment's release page (adrianbulat.com, "
                             "python-fan) and put it at this path, or use --landmarker dlib")
    # The face detector runs for every landmarker: fail now if dlib is missing.
    landmarker.check_available()
    return found


def prepare_dataset(videos: str | os.PathLike, out: str | os.PathLike, options: PrepareOptions,
                    workers: int = 1, progress: bool = True) -> dict:
    """Prepare every video under ``videos`` (this shard's share) into ``out``; returns the
    report (also written to ``out/prepare_report[.K-of-N].json``)."""
    videos, out = Path(videos), Path(out)
    found = check_options(videos, options)
    table = read_speakers(options.speakers) if options.speakers else None
    check_existing(out, options)
    k, n = options.shard
    mine = found[k - 1::n]
    ids = clip_ids(found, videos)
    out.mkdir(parents=True, exist_ok=True)
    jobs = {}
    already, refused_before = 0, {}
    for video in mine:
        clip_id = ids[video]
        split = options.split or split_of(video, options.split_by, videos, table)
        refused = out / REFUSED / f"{clip_id}.json"
        if dataset.clip_path(out, split, clip_id).exists():
            already += 1
        elif refused.is_file():
            refused_before[video.name] = json.loads(refused.read_text()).get("reason", "")
        else:
            jobs[video] = (split, clip_id)
    start = time.perf_counter()
    results: dict[str, tuple] = {}
    bar = progress_bar(len(jobs), "prepare", "video", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        if jobs:
            _init_worker(options)
        for video, (split, clip_id) in jobs.items():
            results[os.fspath(video.relative_to(videos))] = _run_one(video, out, split, clip_id)
            bar.update()
    else:
        import multiprocessing
        # spawn, not fork: forking a process that has started JAX's threads can deadlock.
        with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(options,)) as pool:
            futures = {os.fspath(video.relative_to(videos)): pool.submit(_run_one, video, out, *job)
                       for video, job in jobs.items()}
            for name, future in futures.items():
                results[name] = future.result()
                bar.update()
    bar.close()
    seconds = time.perf_counter() - start
    manifest_clips = _collect(out)
    dataset.write_manifest(out, manifest_clips, options.keypoint_space, feature_config("logmel"),
                           fps=options.fps, extra={"landmarker": options.landmarker,
                                                   "landmarks": True, "flip": options.flip})
    done = {name: r[1] for name, r in results.items() if r[0] == "ok"}
    frames = sum(d["n_frames"] for d in done.values())
    report = {
        "prepared": sorted(done),
        "already_done": already,
        "skipped": {name: r[1] for name, r in sorted(results.items()) if r[0] == "skipped"},
        "skipped_before": refused_before,
        "interpolated_frames": {name: d["frames_interpolated"] for name, d in sorted(done.items())
                                if d["frames_interpolated"]},
        "clips": {s: len(c) for s, c in manifest_clips.items()},
        "shard": f"{k}/{n}",
        "frames": frames,
        "seconds": round(seconds, 2),
        "frames_per_second": round(frames / seconds, 1) if frames else 0.0,
    }
    name = "prepare_report.json" if n == 1 else f"prepare_report.{k}-of-{n}.json"
    (out / name).write_text(json.dumps(report, indent=1))
    if not any(manifest_clips.values()):
        raise InputError(videos, f"no usable clip: {_reasons(report)} (the report: "
                                 f"{out / name})")
    return report


def _reasons(report: dict) -> str:
    """Why every video was refused, on one line: the distinct reasons, each with its count
    and one of its videos."""
    refused = {**report["skipped_before"], **report["skipped"]}
    if not refused:
        return "no video of this shard was prepared"
    by_reason: dict[str, list[str]] = {}
    for name, reason in sorted(refused.items()):
        by_reason.setdefault(str(reason).strip().splitlines()[0][:160] if reason else "refused",
                             []).append(name)
    return f"{len(refused)} video(s) refused — " + "; ".join(
        f"{len(names)} × {reason} (e.g. {names[0]})"
        for reason, names in sorted(by_reason.items(), key=lambda item: -len(item[1])))


def _collect(out: Path) -> dict[str, list[tuple[str, int]]]:
    clips: dict[str, list[tuple[str, int]]] = {}
    for split in dataset.SPLITS:
        for path in sorted((out / split).glob("*.npz")):
            with np.load(path, allow_pickle=False) as npz:
                clips.setdefault(split, []).append((path.stem, int(npz["keypoints"].shape[0])))
    return clips
