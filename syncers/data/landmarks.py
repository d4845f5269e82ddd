"""Offline face boxes and 68-point landmarks: dlib's HOG frontal-face detector and its iBUG 68-point
shape predictor (docs/design.md, "Landmarks").

Both come from PyPI packages with no download at run time: ``dlib-bin`` (wheels) and
``face-recognition-models``, which ships ``shape_predictor_68_face_landmarks.dat`` inside the
package. The 68 points follow the iBUG 300-W layout (0–16 jaw, 17–26 brows, 27–35 nose, 36–47
eyes, 48–67 mouth), the same as face-alignment's, so the paper's rigid subset 17–47 means the
same points with either landmarker.

Coordinates returned here are source pixels, ``(x, y)`` with pixel ``i`` spanning ``[i, i+1)``
(dlib's convention is pixel centres at integers; the half-pixel shift is applied here once).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from syncers.run.errors import InputError, optional_import

N_LANDMARKS = 68
DETECT_SIDE = 640           # detection runs on a copy whose longer side is at most this (speed)
# dlib's weak detections beside a clear face are its false positives (the astronaut's suit
# scores 0.1 beside her face's 1.2 when searched doubled); they must not win as the largest.
MIN_SCORE_SHARE = 0.3
MIN_DETECTED_SIDE = 40      # about the smallest face dlib finds in a copy searched doubled
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = "pip install dlib-bin face-recognition-models"


def predictor_path() -> Path:
    """Where ``face-recognition-models`` keeps the 68-point predictor (found without importing
    the package, whose ``__init__`` needs ``pkg_resources``, absent on new Pythons)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, "the dlib landmarker needs face-recognition-models "
                               f"({INSTALL_HINT})")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise InputError(path, "missing from face-recognition-models; reinstall it "
                               f"({INSTALL_HINT})")
    return path


def _models():
    """``(dlib, detector, predictor)``, loaded once per process (the predictor file is
    ~100 MB); waits for a :func:`preload` under way."""
    with _LOADING:
        return _load_models()


_LOADING = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load_models():
    dlib = optional_import("dlib", "the dlib landmarker", install=INSTALL_HINT)
    return dlib, dlib.get_frontal_face_detector(), dlib.shape_predictor(os.fspath(predictor_path()))


def preload() -> None:
    """Start loading dlib's models in a background thread. dlib reads its predictor (0.6 s)
    without holding the GIL, so a command that will need landmarks gets them while it imports
    JAX and its models. A failure is left for the first real use to report."""
    def load() -> None:
        try:
            _models()
        except Exception:       # noqa: BLE001 — the first real use raises it with its message
            pass
    threading.Thread(target=load, name="dlib-preload", daemon=True).start()


def check_available() -> None:
    """Raise the one-line InputError now if dlib or the predictor is missing."""
    _models()


def _as_uint8(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3]; got {tuple(image.shape)}")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    # By bands of rows: a 6000x4000 photo would otherwise take three float copies (~0.9 GB)
    # on the way to its 72 MB of bytes.
    out = np.empty(image.shape, np.uint8)
    for top in range(0, image.shape[0], _ROWS_PER_BAND):
        band = image[top:top + _ROWS_PER_BAND]
        out[top:top + _ROWS_PER_BAND] = (np.clip(band, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return out


_ROWS_PER_BAND = 256


def detect_faces(image: np.ndarray, upsample: int | None = None
                 ) -> list[tuple[float, float, float, float]]:
    """Face boxes ``(x0, y0, x1, y1)`` in source pixels of ``image [H, W, 3]`` (uint8, or float
    in [0, 1]), largest first.

    Detection runs on a copy shrunk to ``DETECT_SIDE`` for speed (the boxes are scaled back).
    dlib's HOG detector finds faces of about 80 pixels and up, so when nothing is found the
    copy is searched once more doubled (faces of about 40 pixels in the copy: 40 pixels in a
    small photo, 40 / scale in a large one; ``upsample`` forces a number of doublings).
    Detections scoring under ``MIN_SCORE_SHARE`` of the best one are dropped.
    """
    dlib, detector, _ = _models()
    pixels = _as_uint8(image)
    h, w = pixels.shape[:2]
    scale = min(1.0, DETECT_SIDE / max(h, w))
    if scale < 1.0:
        from PIL import Image
        pixels = np.asarray(Image.fromarray(pixels).resize(
            (max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
    # A shrunk copy is searched doubled too: a 400-pixel face in a 6000x4000 photo is 43
    # pixels in its 640-pixel copy.
    tries = (upsample,) if upsample is not None else \
        (0, 1) if max(h, w) * scale < 400 or scale < 1.0 else (0,)
    found, scores = [], []
    for times in tries:
        found, scores, _ = detector.run(pixels, times, 0.0)
        if found:
            break
    best = max(scores, default=0.0)
    boxes = [(r.left() / scale, r.top() / scale, (r.right() + 1) / scale,
              (r.bottom() + 1) / scale) for r, score in zip(found, scores)
             if score >= MIN_SCORE_SHARE * best]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def min_face_side(image_shape: tuple[int, ...]) -> float:
    """The side (source pixels) of about the smallest face :func:`detect_faces` finds in an
    image of ``image_shape`` ``(H, W, ...)``: ``MIN_DETECTED_SIDE`` in its detection copy,
    searched doubled."""
    h, w = image_shape[:2]
    return MIN_DETECTED_SIDE / min(1.0, DETECT_SIDE / max(h, w))


def landmarks(image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The 68 iBUG landmarks ``[68, 2]`` float32 in source pixels of ``image [H, W, 3]`` for the
    face in ``box`` ``(x0, y0, x1, y1)`` (a detector box: the predictor is trained on dlib's)."""
    dlib, _, predictor = _models()
    x0, y0, x1, y1 = box
    rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)) - 1, int(round(y1)) - 1)
    shape = predictor(_as_uint8(image), rect)
    points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)],
                      np.float32)
    return points + np.float32(0.5)     # dlib's integer pixel centres → edge coordinates


def crop_landmarks(crop: np.ndarray) -> np.ndarray | None:
    """The 68 landmarks ``[68, 2]`` of the largest face in a face crop ``[S, S, 3]``, in the
    crop's normalised coordinates (x right, y down, −1/+1 = first/last pixel centre), or None
    when dlib finds no face in it."""
    found = detect_faces(crop)
    if not found:
        return None
    return to_crop_coords(landmarks(crop, found[0]), crop.shape[0])


MAX_LOST_SECONDS = 0.5      # a longer run of frames without a face refuses the clip
MAX_LOST_FRACTION = 0.25    # so does losing more than this share of the frames
SMOOTH_FRAMES = 5           # Savitzky–Golay window (frames) on the per-frame boxes and landmarks


def to_crop_coords(points_px: np.ndarray, size: int) -> np.ndarray:
    """Edge-coordinate pixels of a ``size``-pixel crop → normalised (−1/+1 = first/last pixel
    centre, the keypoints' coordinates)."""
    return ((points_px - 0.5) / (size - 1) * 2.0 - 1.0).astype(np.float32)


def to_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`to_crop_coords`."""
    return ((np.asarray(points, np.float32) + 1.0) / 2.0 * (size - 1) + 0.5).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Track:
    """The landmarks of a clip: ``landmarks [T, 68, 2]`` in the crops' normalised coordinates,
    ``detected [T]`` whether dlib found the face in that frame (the others were interpolated)."""

    landmarks: np.ndarray
    detected: np.ndarray

    @property
    def lost_fraction(self) -> float:
        return float(1.0 - self.detected.mean())


class FaceLost(Exception):
    """The face is missing from too many frames of a clip; the message says where."""


def track(crops: np.ndarray, fps: float) -> Track:
    """Landmarks of every frame of face crops ``[T, S, S, 3]`` (one crop box per clip).

    Per frame, dlib's detector runs on the crop (the face moves inside the fixed crop); frames
    where it misses take the landmarks interpolated from their neighbours; the clip is refused
    (:class:`FaceLost`) when more than ``MAX_LOST_SECONDS`` in a row or ``MAX_LOST_FRACTION`` of
    it are missing. The boxes are smoothed over ``SMOOTH_FRAMES`` (dlib's detection boxes step
    between the scales of its image pyramid; a jumping box would make the landmarks jump), the
    predictor runs on every detected frame in its smoothed box, and the landmark tracks get the
    same Savitzky–Golay
    filter (order 2, which keeps the peaks of a 25 fps mouth opening while removing the
    predictor's frame-to-frame jitter).
    """
    from scipy.signal import savgol_filter

    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be [T, S, S, 3]; got {tuple(crops.shape)}")
    n_frames, size = crops.shape[0], crops.shape[1]
    boxes = np.full((n_frames, 4), np.nan)
    for t, crop in enumerate(crops):
        found = detect_faces(crop, upsample=0)
        if found:
            boxes[t] = found[0]
    detected = np.isfinite(boxes[:, 0])
    if not detected.any():
        raise FaceLost("no face found in any frame of the crop")
    longest = _longest_run(~detected)
    if longest > MAX_LOST_SECONDS * fps or (~detected).mean() > MAX_LOST_FRACTION:
        raise FaceLost(f"face lost in {int((~detected).sum())} of {n_frames} frames "
                       f"(longest gap {longest / fps:.2f} s; at most {MAX_LOST_SECONDS:g} s "
                       f"and {MAX_LOST_FRACTION:.0%} are interpolated)")
    times = np.arange(n_frames)
    for c in range(4):
        boxes[:, c] = np.interp(times, times[detected], boxes[detected, c])
    if n_frames >= SMOOTH_FRAMES:
        boxes = savgol_filter(boxes, SMOOTH_FRAMES, 2, axis=0)
    points = np.full((n_frames, N_LANDMARKS, 2), np.nan, np.float32)
    for t in np.flatnonzero(detected):
        points[t] = landmarks(crops[t], tuple(boxes[t]))
    # The predictor always answers, even on a frame with no face: the lost frames take the
    # landmarks interpolated from their neighbours instead.
    for index in np.ndindex(N_LANDMARKS, 2):
        track_ = points[(slice(None),) + index]
        track_[~detected] = np.interp(times[~detected], times[detected], track_[detected])
    if n_frames >= SMOOTH_FRAMES:
        points = savgol_filter(points, SMOOTH_FRAMES, 2, axis=0)
    return Track(to_crop_coords(points, size), detected)


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best
