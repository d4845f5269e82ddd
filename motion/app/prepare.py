"""``msync data prepare``: real talking-head videos → an msync dataset (docs/design.md,
"Data flow").

Per video: decode at 25 fps, extract the 16 kHz audio, find one face box for the whole clip (the
median of LBP detections, so the crop does not jitter), crop every frame to 256×256 around it,
run the FOMM keypoint detector (``--fomm-checkpoint``) on the crops (and on their mirror images
with ``--flip``), optionally the face-alignment 68-point landmarks (``--landmarks``), compute the
audio features, and write the clip in the dataset format of ``syncers.data.dataset``.

Splits are by speaker: the file name up to its last ``_`` (``WDA_KatieHill_000`` → speaker
``WDA_KatieHill``; ``--split-by clip`` uses the whole name). A stable hash of that key picks the
split (10 % test, 10 % val), so adding videos later never moves a clip between splits.

Resumable: a clip whose npz already exists is not recomputed. Videos that cannot be used (no
audio, no face, too short, unreadable) are skipped and listed with the reason in
``DIR/prepare_report.json``; the others go on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from render import face
from render import video as video_io
from render.fomm import load
from render.keypoints import join
from syncers.data import dataset
from syncers.data.features import (SAMPLES_PER_FRAME, audio_features, feature_config,
                                   load_audio, n_video_frames)
from syncers.data.layout import FOMM_SPACE, FPS
from syncers.run.errors import InputError, optional_import

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
KEYPOINT_SPACE = FOMM_SPACE
TRACK_SAMPLES = 12
FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"   # the file face-alignment looks for in torch hub


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    fomm_checkpoint: str
    fomm_config: str | None = None
    landmarks: bool = False
    flip: bool = False
    split_by: str = "speaker"
    min_seconds: float = 2.0
    fps: float = float(FPS)


class Skip(Exception):
    """A video that cannot become a clip; the message is the reason in the report."""


def split_of(video: Path, split_by: str) -> str:
    key = video.stem.rsplit("_", 1)[0] if split_by == "speaker" and "_" in video.stem \
        else video.stem
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "val" if bucket == 1 else "train"


def clip_id_of(video: Path) -> str:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in video.stem)
    return safe.lstrip("._-") or "clip"


def fan_weights_path() -> Path:
    # Deferred: torch is an optional dependency (msync[torch]), needed only for --landmarks.
    hub = optional_import("torch.hub", "--landmarks (face-alignment)")
    return Path(hub.get_dir()) / "checkpoints" / FAN_WEIGHTS


class _Worker:
    """Per-process models, loaded once (the FOMM detector and, if asked, face-alignment)."""

    def __init__(self, options: PrepareOptions):
        self.options = options
        self.fomm = load(options.fomm_checkpoint, options.fomm_config)
        self.fan = None
        if options.landmarks:
            # Deferred: face-alignment is an optional dependency (msync[torch]).
            face_alignment = optional_import("face_alignment", "--landmarks")
            # The "folder" detector loads no weights: we pass our own face box instead.
            self.fan = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device="cpu", face_detector="folder",
                compile=False, flip_input=False)

    def prepare(self, video: Path, out: Path) -> tuple[str, int]:
        options = self.options
        info = video_io.probe(video)
        if not info.has_audio:
            raise Skip("no audio track")
        frames = video_io.read_video(video, options.fps)
        samples = load_audio(video)
        n_frames = min(len(frames), n_video_frames(samples.size))
        if n_frames < options.min_seconds * options.fps:
            raise Skip(f"too short: {n_frames / options.fps:.2f} s of audio and video "
                       f"(need {options.min_seconds:g} s)")
        frames = frames[:n_frames]
        # A dozen frames spread over the clip are plenty for the median box.
        sampled = frames[np.linspace(0, n_frames - 1, TRACK_SAMPLES).astype(int)]
        box = face.track_box(sampled, stride=1)
        if box is None:
            raise Skip("no face found")
        crops = face.crop_frames(frames, box)
        keypoints = join(self.fomm.keypoints(crops))
        flipped = join(self.fomm.keypoints(crops[:, :, ::-1])) if options.flip else None
        landmarks = self._landmarks(crops) if self.fan is not None else None
        samples = samples[:n_frames * SAMPLES_PER_FRAME]
        meta = {"source": os.fspath(video), "fps": options.fps, "face_box": list(box),
                "keypoint_space": KEYPOINT_SPACE, "crop_size": int(crops.shape[1])}
        split = split_of(video, options.split_by)
        dataset.write_clip(out, split, clip_id_of(video), keypoints, audio_features(samples),
                           samples=samples, meta=meta, landmarks=landmarks,
                           keypoints_flipped=flipped)
        return split, n_frames

    def _landmarks(self, crops: np.ndarray) -> np.ndarray:
        size = crops.shape[1]
        # Landmarks are stored normalised like the keypoints: −1/+1 = first/last pixel centre.
        box = [np.array([0.1 * size, 0.1 * size, 0.9 * size, 0.9 * size])]
        points = []
        for index, crop in enumerate(crops):
            found = self.fan.get_landmarks_from_image((crop * 255).astype(np.uint8),
                                                      detected_faces=box)
            if not found:
                raise Skip(f"face-alignment found no landmarks in frame {index}")
            points.append(found[0][:, :2])
        return (np.stack(points) / (size - 1) * 2 - 1).astype(np.float32)


_WORKER: _Worker | None = None


def _init_worker(options: PrepareOptions) -> None:
    global _WORKER  # one per worker process: the models load once, not once per video
    _WORKER = _Worker(options)


def _run_one(video: Path, out: Path) -> tuple[str, str, Any]:
    try:
        split, n_frames = _WORKER.prepare(video, out)
        return "ok", split, n_frames
    except (Skip, InputError, InputError) as err:
        return "skipped", "", str(err)


def check_options(videos: Path, options: PrepareOptions) -> list[Path]:
    if not videos.is_dir():
        raise InputError(videos, "no such directory of videos")
    found = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise InputError(videos, f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in it")
    if not options.fomm_checkpoint:
        raise InputError(None, "data prepare needs --fomm-checkpoint: the dataset's keypoints "
                               "come from FOMM's keypoint detector (vox-cpk.pth.tar)")
    if not Path(options.fomm_checkpoint).exists():
        raise InputError(options.fomm_checkpoint, "no such FOMM checkpoint")
    if options.landmarks:
        # Fail here, not in a worker, when the optional face-alignment is not installed.
        optional_import("face_alignment", "--landmarks")
    if options.landmarks and not fan_weights_path().is_file():
        raise InputError(fan_weights_path(), "face-alignment weights not found; download "
                         f"{FAN_WEIGHTS} from face-alignment's release page (adrianbulat.com, "
                         "python-fan) and put it at this path")
    return found


def prepare_dataset(videos: str | os.PathLike, out: str | os.PathLike, options: PrepareOptions,
                    workers: int = 1, progress: bool = True) -> dict:
    """Prepare every video under ``videos`` into the dataset ``out``; returns the report."""
    from tqdm import tqdm

    videos, out = Path(videos), Path(out)
    found = check_options(videos, options)
    out.mkdir(parents=True, exist_ok=True)
    todo = [v for v in found if not any(dataset.clip_path(out, s, clip_id_of(v)).exists()
                                        for s in dataset.SPLITS)]
    start = time.perf_counter()
    results: dict[str, tuple] = {}
    bar = tqdm(total=len(todo), desc="prepare", unit="video", disable=not progress)
    if workers <= 1 or len(todo) <= 1:
        _init_worker(options)
        for video in todo:
            results[video.name] = _run_one(video, out)
            bar.update()
    elif todo:
        import multiprocessing
        # spawn, not fork: forking a process that has started JAX's threads can deadlock.
        with ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(options,)) as pool:
            futures = {video.name: pool.submit(_run_one, video, out) for video in todo}
            for name, future in futures.items():
                results[name] = future.result()
                bar.update()
    bar.close()
    manifest_clips = _collect(out)
    dataset.write_manifest(out, manifest_clips, KEYPOINT_SPACE, feature_config("logmel"),
                           fps=options.fps, extra={"landmarks": options.landmarks,
                                                   "flip": options.flip})
    report = {
        "prepared": sorted(n for n, r in results.items() if r[0] == "ok"),
        "already_done": len(found) - len(todo),
        "skipped": {n: r[2] for n, r in sorted(results.items()) if r[0] == "skipped"},
        "clips": {s: len(c) for s, c in manifest_clips.items()},
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out / "prepare_report.json").write_text(json.dumps(report, indent=1))
    return report


def _collect(out: Path) -> dict[str, list[tuple[str, int]]]:
    clips: dict[str, list[tuple[str, int]]] = {}
    for split in dataset.SPLITS:
        for path in sorted((out / split).glob("*.npz")):
            with np.load(path, allow_pickle=False) as npz:
                clips.setdefault(split, []).append((path.stem, int(npz["keypoints"].shape[0])))
    return clips


def prepare_command(args: Any) -> None:
    options = PrepareOptions(fomm_checkpoint=args.fomm_checkpoint,
                             fomm_config=args.fomm_config, landmarks=args.landmarks,
                             flip=args.flip, split_by=args.split_by,
                             min_seconds=args.min_seconds)
    report = prepare_dataset(args.videos, args.out, options, workers=args.workers)
    skipped = report["skipped"]
    print(f"prepared {len(report['prepared'])} clip(s) ({report['already_done']} already done), "
          f"skipped {len(skipped)}, splits {report['clips']}, {report['seconds']} s "
          f"→ {args.out}")
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
