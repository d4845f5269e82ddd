"""The msync dataset format: one ``.npz`` per clip plus a ``manifest.json``
(docs/design.md, "Data model").

Layout::

    <root>/manifest.json
    <root>/<split>/<clip_id>.npz     keypoints [T, K, 6], audio_features [4T, F],
                                     optional landmarks [T, P, 2], meta (JSON string)
    <root>/<split>/<clip_id>.wav     the 16 kHz mono audio (optional)

The features array is named ``audio_features``, not ``audio``, because it holds the 100 Hz
features, not samples (the samples are the ``.wav`` beside it).

The manifest records the format version, ``keypoint_space``, the feature config, the fps and, per
split (``train``/``val``/``test``), the clip ids with their lengths in video frames. Everything
is read with ``np.load(allow_pickle=False)``: a clip holding object arrays is refused. Every
problem a user's data can have raises :class:`InputError` naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from syncers.data.features import feature_mismatch
from syncers.data.layout import FEATURES_PER_FRAME, FPS, KEYPOINT_DIM, N_KEYPOINTS, SAMPLE_RATE
from syncers.run.errors import InputError

FORMAT = "msync-dataset"
VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
_CLIP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclasses.dataclass(frozen=True)
class ClipInfo:
    clip_id: str
    n_frames: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    root: Path
    keypoint_space: str
    features: dict
    fps: float
    splits: dict[str, tuple[ClipInfo, ...]]
    extra: dict

    def clips(self, split: str) -> tuple[ClipInfo, ...]:
        if split not in self.splits:
            raise InputError(self.root / MANIFEST,
                             f"no split {split!r} (has: {', '.join(self.splits) or 'none'})")
        return self.splits[split]


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip in memory. ``keypoints [T, K, 6]``, ``audio_features [4T, F]``,
    ``landmarks [T, P, 2]`` or None, ``keypoints_flipped [T, K, 6]`` or None (keypoints of the
    horizontally flipped video, for the flip augmentation), ``meta`` a dict."""
    clip_id: str
    keypoints: np.ndarray
    audio_features: np.ndarray
    landmarks: np.ndarray | None = None
    keypoints_flipped: np.ndarray | None = None
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.keypoints.shape[0])


def clip_path(root: str | os.PathLike, split: str, clip_id: str) -> Path:
    return Path(root) / split / f"{clip_id}.npz"


def write_clip(root: str | os.PathLike, split: str, clip_id: str, keypoints: np.ndarray,
               audio_features: np.ndarray, samples: np.ndarray | None = None,
               meta: Mapping[str, Any] | None = None, landmarks: np.ndarray | None = None,
               keypoints_flipped: np.ndarray | None = None) -> Path:
    """Validate and write one clip (and its 16 kHz wav when ``samples`` is given).

    The npz is written to a temporary name and renamed, so a killed writer never leaves a
    half-written clip under its real name.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if not _CLIP_ID.fullmatch(clip_id):
        raise ValueError(f"clip id {clip_id!r} must be letters, digits, '.', '_' or '-'")
    path = clip_path(root, split, clip_id)
    arrays = {"keypoints": np.asarray(keypoints, np.float32),
              "audio_features": np.asarray(audio_features, np.float32),
              "meta": np.array(json.dumps(dict(meta or {}), sort_keys=True))}
    if landmarks is not None:
        arrays["landmarks"] = np.asarray(landmarks, np.float32)
    if keypoints_flipped is not None:
        arrays["keypoints_flipped"] = np.asarray(keypoints_flipped, np.float32)
    _validate(path, arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    os.replace(partial, path)
    if samples is not None:
        import soundfile
        soundfile.write(str(path.with_suffix(".wav")), np.asarray(samples, np.float32),
                        SAMPLE_RATE, subtype="PCM_16")
    return path


def write_manifest(root: str | os.PathLike, clips: Mapping[str, Iterable[tuple[str, int]]],
                   keypoint_space: str, features: Mapping[str, Any], fps: float = FPS,
                   extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``manifest.json``: ``clips`` maps each split to ``(clip_id, n_frames)`` pairs."""
    unknown = set(clips) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {SPLITS}")
    manifest = {
        "format": FORMAT, "version": VERSION, "keypoint_space": keypoint_space,
        "features": dict(features), "fps": float(fps),
        "splits": {split: [{"id": cid, "n_frames": int(n)} for cid, n in clips.get(split, ())]
                   for split in SPLITS},
        "extra": dict(extra or {}),
    }
    path = Path(root) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{MANIFEST}.partial")
    partial.write_text(json.dumps(manifest, indent=1))
    os.replace(partial, path)
    return path


def read_manifest(root: str | os.PathLike) -> Manifest:
    """Read and check ``<root>/manifest.json``."""
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise InputError(root, "no such dataset directory" if not root.exists()
                         else "not a directory")
    if not path.is_file():
        raise InputError(path, "missing: not an msync dataset (make one with "
                               "`msync data synth` or `msync data prepare`)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(path, f"not an msync dataset manifest (format must be {FORMAT!r})")
    if data.get("version") != VERSION:
        raise InputError(path, f"unsupported manifest version {data.get('version')!r}")
    try:
        splits = {split: tuple(ClipInfo(c["id"], int(c["n_frames"])) for c in entries)
                  for split, entries in data["splits"].items()}
        manifest = Manifest(root=root, keypoint_space=str(data["keypoint_space"]),
                            features=dict(data["features"]), fps=float(data["fps"]),
                            splits=splits, extra=dict(data.get("extra", {})))
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise InputError(path, f"malformed manifest ({type(err).__name__}: {err})") from None
    _check_clip_ids(path, manifest.splits)
    return manifest


def _check_clip_ids(path: Path, splits: Mapping[str, Sequence[ClipInfo]]) -> None:
    """Splits are ``train``/``val``/``test`` and clip ids plain file names (a manifest naming
    ``../val/x`` would make readers open files outside their split), each listed once."""
    for split, infos in splits.items():
        if split not in SPLITS:
            raise InputError(path, f"unknown split {split!r} (splits are {', '.join(SPLITS)})")
        seen = set()
        for info in infos:
            if not isinstance(info.clip_id, str) or not _CLIP_ID.fullmatch(info.clip_id):
                raise InputError(path, f"clip id {info.clip_id!r} in split {split!r} is not a "
                                       "plain name (letters, digits, '.', '_' or '-', not "
                                       "starting with '.', '_' or '-')")
            if info.clip_id in seen:
                raise InputError(path, f"clip id {info.clip_id!r} is listed twice in split "
                                       f"{split!r}")
            seen.add(info.clip_id)


def read_clip(root: str | os.PathLike, split: str, clip_id: str,
              expected_frames: int | None = None) -> Clip:
    """Load and validate one clip; never unpickles."""
    path = clip_path(root, split, clip_id)
    if not path.is_file():
        raise InputError(path, "missing clip file listed in the manifest")
    if not zipfile.is_zipfile(path):
        # np.load would take any non-zip file for a pickle and blame "object arrays".
        raise InputError(path, "not a readable npz (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise InputError(path, "holds object arrays, which msync refuses to load "
                                   "(they could execute code)") from None
        raise InputError(path, f"not a readable npz ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(path, f"not a readable npz ({err})") from None
    _validate(path, arrays)
    if expected_frames is not None and arrays["keypoints"].shape[0] != expected_frames:
        raise InputError(path, f"has {arrays['keypoints'].shape[0]} frames but the manifest "
                               f"says {expected_frames}")
    try:
        meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
    except json.JSONDecodeError as err:
        raise InputError(path, f"meta is not valid JSON ({err})") from None
    return Clip(clip_id=clip_id, keypoints=arrays["keypoints"],
                audio_features=arrays["audio_features"], landmarks=arrays.get("landmarks"),
                keypoints_flipped=arrays.get("keypoints_flipped"), meta=meta)


def load_split(root: str | os.PathLike, split: str,
               manifest: Manifest | None = None) -> list[Clip]:
    """All clips of a split, validated against the manifest."""
    manifest = manifest or read_manifest(root)
    clips = [read_clip(manifest.root, split, info.clip_id, info.n_frames)
             for info in manifest.clips(split)]
    for clip in clips:
        check_clip_agrees(clip, manifest, clip_path(manifest.root, split, clip.clip_id))
    return clips


def check_clip_agrees(clip: Clip, manifest: Manifest, path: Path) -> None:
    """A clip must be of its manifest's kind: as many feature bands as the manifest's features,
    and the feature config and keypoint space its ``meta`` records (current writers record
    both) equal to the manifest's. Clips copied in from another dataset, of other features with
    the same width (MFCC among log-mel), would otherwise train a model on two kinds of input."""
    n_bands = manifest.features.get("n_bands")
    width = clip.audio_features.shape[1]
    if isinstance(n_bands, int) and width != n_bands:
        raise InputError(path, f"audio_features have {width} bands; the manifest's features have "
                               f"{n_bands} (one dataset holds one kind of features)")
    recorded = clip.meta.get("features")
    mismatch = feature_mismatch(recorded, manifest.features) if isinstance(recorded, dict) \
        else None
    if mismatch:
        raise InputError(path, f"its audio features differ from the manifest's ({mismatch}): "
                               "one dataset holds one kind of features; prepare these clips into "
                               "their own dataset")
    space = clip.meta.get("keypoint_space")
    if space is not None and space != manifest.keypoint_space:
        raise InputError(path, f"holds {space} keypoints; the manifest says "
                               f"{manifest.keypoint_space} (one dataset holds one keypoint space)")


def _validate(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    for key in ("keypoints", "audio_features"):
        if key not in arrays:
            raise InputError(path, f"missing array {key!r}")
    keypoints, features = arrays["keypoints"], arrays["audio_features"]
    # Every space has N_KEYPOINTS keypoints; clips of other counts cannot be batched together.
    _check_array(path, "keypoints", keypoints, ndim=3, last=KEYPOINT_DIM, middle=N_KEYPOINTS)
    _check_array(path, "audio_features", features, ndim=2)
    n_frames = keypoints.shape[0]
    if n_frames == 0:
        raise InputError(path, "keypoints have no frames")
    if features.shape[0] != FEATURES_PER_FRAME * n_frames:
        raise InputError(path, f"keypoints have {n_frames} frames but audio_features have "
                               f"{features.shape[0]} (expected {FEATURES_PER_FRAME} × {n_frames} = "
                               f"{FEATURES_PER_FRAME * n_frames})")
    if "landmarks" in arrays:
        _check_array(path, "landmarks", arrays["landmarks"], ndim=3, last=2)
        if arrays["landmarks"].shape[0] != n_frames:
            raise InputError(path, f"landmarks have {arrays['landmarks'].shape[0]} frames, "
                                   f"keypoints {n_frames}")
    if "keypoints_flipped" in arrays:
        _check_array(path, "keypoints_flipped", arrays["keypoints_flipped"], ndim=3,
                     last=KEYPOINT_DIM, middle=N_KEYPOINTS)
        if arrays["keypoints_flipped"].shape != keypoints.shape:
            raise InputError(path, "keypoints_flipped must have the shape of keypoints "
                                   f"{keypoints.shape}; got {arrays['keypoints_flipped'].shape}")


def _check_array(path: Path, name: str, array: np.ndarray, ndim: int,
                 last: int | None = None, middle: int | None = None) -> None:
    """``array``: floating point, finite, ``ndim`` axes, the last ``last`` long and (for three
    axes) the middle one ``middle`` long when given."""
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(path, f"{name} must be floating point; got dtype {array.dtype}")
    if array.ndim != ndim or (last is not None and array.shape[-1] != last) or \
            (middle is not None and array.shape[1] != middle):
        inner = ["·"] * (ndim - 1)
        if middle is not None:
            inner[1] = str(middle)
        want = "[" + ", ".join(inner + [str(last) if last else "·"]) + "]"
        raise InputError(path, f"{name} must have shape {want}; got {list(array.shape)}")
    if not np.all(np.isfinite(array)):
        raise InputError(path, f"{name} contains NaN or infinite values")


def split_for(index: int, n_clips: int, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """Deterministic split of clip ``index`` out of ``n_clips`` (train, then val, then test)."""
    n_train = int(round(fractions[0] * n_clips))
    n_val = int(round(fractions[1] * n_clips))
    if n_clips >= 3:
        n_train = min(n_train, n_clips - 2)
        n_val = max(1, min(n_val, n_clips - n_train - 1))
    if index < n_train:
        return "train"
    return "val" if index < n_train + n_val else "test"
