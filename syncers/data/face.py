"""Source images for the renderer: loading, face detection and the 256×256 face crop.

Faces are found with dlib's HOG frontal-face detector (``syncers.data.landmarks``; docs/design.md,
"Renderer"); the crop is a square around the largest detection with a margin, padded by edge
replication where it leaves the image. Boxes: ``FaceCrop.box`` is in source pixels with edge
coordinates ``(x0, y0, x1, y1)`` (pixel ``i`` spans ``[i, i+1)``); ``FaceCrop.face_box`` is in the
normalised coordinates of the crop (x right, y down, −1/+1 = centres of the first/last pixel),
ready for ``syncers.data.phantom.template.fit_to_box``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import warnings

import numpy as np

from syncers.data import landmarks
from syncers.run.errors import InputError

MIN_SIDE = 16              # smaller images cannot hold a face worth animating
MAX_PIXELS = 50_000_000    # 50 megapixels (e.g. 8660x5770): 600 MB as float32 RGB
DEFAULT_MARGIN = 0.25      # crop side = face side · (1 + 2·margin): prepare's training crops
TRAINING_CROP_SCALE = 1 + 2 * DEFAULT_MARGIN
DEFAULT_FACE_BOX = (-0.5, -0.5, 0.5, 0.5)  # --no-crop: assume a centred face filling half


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    """A square face crop: ``image [size, size, 3]`` float32 in [0, 1]; ``box`` the crop in
    source pixels ``(x0, y0, x1, y1)``; ``face_box`` the face in the crop's normalised coords."""

    image: np.ndarray
    box: tuple[int, int, int, int]
    face_box: tuple[float, float, float, float]


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image PIL can open → ``[H, W, 3]`` float32 RGB in [0, 1].

    Alpha is composited over white (transparent backgrounds would otherwise turn black),
    16-bit and float images are scaled, grayscale/palette/CMYK converted, EXIF rotation applied.
    An image of more than ``MAX_PIXELS`` pixels is refused from its header, before decoding.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):
        raise InputError(path, "is a directory, not an image file" if os.path.isdir(path)
                               else "no such image file")
    if os.path.getsize(path) == 0:
        raise InputError(path, "the file is empty (0 bytes)")
    too_large = f"more than the {MAX_PIXELS:,} pixels msync reads; scale it down"
    try:
        with warnings.catch_warnings():
            # PIL warns from 89 megapixels on; msync's own limit is lower and says it in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size           # read from the header, nothing decoded yet
                if width * height > MAX_PIXELS:
                    raise InputError(path, f"image is {width}x{height} = {width * height:,} "
                                           f"pixels, {too_large}")
                img = ImageOps.exif_transpose(img)
                img.load()
    except Image.DecompressionBombError:
        raise InputError(path, f"image is {too_large}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(path, f"not a readable image ({type(err).__name__}: {err})") \
            from None
    if min(img.size) < MIN_SIDE:
        raise InputError(path, f"image is {img.size[0]}x{img.size[1]} pixels; need at least "
                                     f"{MIN_SIDE}x{MIN_SIDE}")
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # PIL opens 16-bit grayscale PNGs as I;16 (or I); values run to 65535.
        gray = np.asarray(img, dtype=np.float64) / 65535.0
        rgb = np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    elif mode == "F":
        rgb = np.repeat(np.clip(np.asarray(img, np.float64), 0, 1)[..., None], 3, axis=-1)
    elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = np.asarray(img.convert("RGBA"), np.float64) / 255.0
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
    else:
        # 8-bit: float32 division rounds x / 255 exactly as float64 then float32 does (all 256
        # values checked), with a quarter of the memory (a 6000x4000 photo: 288 MB, not 1.2 GB).
        rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB")).astype(np.float32)
        rgb /= np.float32(255.0)
        return np.ascontiguousarray(rgb)
    if not np.all(np.isfinite(rgb)):
        raise InputError(path, "image holds NaN or infinite pixel values")
    return np.ascontiguousarray(rgb, dtype=np.float32)


def detect_faces(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Face boxes ``(x0, y0, x1, y1)`` in source pixels of ``image [H, W, 3]``, largest first
    (dlib's detector, ``syncers.data.landmarks.detect_faces``)."""
    _check_image(image)
    return landmarks.detect_faces(image)


def crop(image: np.ndarray, size: int = 256, margin: float = DEFAULT_MARGIN,
         path: str | os.PathLike | None = None) -> FaceCrop:
    """Square crop ``[size, size, 3]`` around the largest face in ``image [H, W, 3]``.

    ``path`` only names the file in the error raised when no face is found.
    """
    boxes = detect_faces(image)
    if not boxes:
        raise InputError(path, no_face_message(image.shape))
    return crop_around(image, boxes[0], size, margin)


def no_face_message(image_shape: tuple[int, ...]) -> str:
    """The problem of a photo in which no face is found, with the smallest face looked for
    (``syncers.data.landmarks.min_face_side``: about 40 pixels; more in a photo shrunk for
    detection)."""
    side = landmarks.min_face_side(image_shape)
    where = "" if side <= landmarks.MIN_DETECTED_SIDE else \
        " in a photo this large (crop it around the face to find a smaller one)"
    return (f"no frontal face found; msync animates a face seen from the front, at least "
            f"about {side:.0f} pixels across{where}; use --no-crop to animate the centre of "
            "the image")


def crop_around(image: np.ndarray, face: tuple[float, float, float, float], size: int = 256,
                margin: float = DEFAULT_MARGIN) -> FaceCrop:
    """Square crop around a given face box ``(x0, y0, x1, y1)`` in source pixels."""
    x0, y0, x1, y1 = face
    box = _square_box(face, margin)
    face_box = tuple(_to_crop_coords(v, o, box[2] - box[0], size)
                     for v, o in ((x0, box[0]), (y0, box[1]), (x1, box[0]), (y1, box[1])))
    return FaceCrop(_cut(image, box, size), box, face_box)


def crop_frames(frames: np.ndarray, face: tuple[float, float, float, float], size: int = 256,
                margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """``frames [T, H, W, 3]`` (uint8 or float in [0, 1]) → ``[T, size, size, 3]`` float32 crops
    around one face box: every frame cropped exactly as :func:`crop_around` crops one image
    (a video keeps one box per clip), the whole clip at once.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3]; got {tuple(frames.shape)}")
    box = _square_box(face, margin)
    patches = _patch(frames, box).astype(np.float32)
    if frames.dtype == np.uint8:
        patches *= np.float32(1 / 255.0)
    return _resize(patches, size)


def no_crop(image: np.ndarray, size: int = 256) -> FaceCrop:
    """Centre square crop resized to ``size``; the face is assumed at ``DEFAULT_FACE_BOX``."""
    _check_image(image)
    h, w = image.shape[:2]
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    box = (x0, y0, x0 + side, y0 + side)
    return FaceCrop(_cut(image, box, size), box, DEFAULT_FACE_BOX)


def track_box(frames: np.ndarray, stride: int = 5) -> tuple[float, float, float, float] | None:
    """One face box ``(x0, y0, x1, y1)`` in pixels for a clip ``[T, H, W, 3]``: the per-coordinate
    median of the largest detection in every ``stride``-th frame (frames without one are
    skipped); ``None`` when no frame has a face. A fixed box keeps the crop from jittering."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3]; got {tuple(frames.shape)}")
    found = []
    for frame in frames[::max(1, stride)]:
        boxes = detect_faces(frame)
        if boxes:
            found.append(boxes[0])
    if not found:
        return None
    return tuple(float(v) for v in np.median(np.asarray(found), axis=0))


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Square frames ``[T, S, S, 3]`` float in [0, 1] → ``[T, size, size, 3]`` float32 (the same
    antialiased linear resize as the crops)."""
    return _resize(np.asarray(frames, np.float32), size)


def crop_box(face: tuple[float, float, float, float], margin: float = DEFAULT_MARGIN
             ) -> tuple[int, int, int, int]:
    """The square box (source pixels) that :func:`crop_frames` crops around ``face``."""
    return _square_box(face, margin)


def _square_box(face: tuple[float, float, float, float], margin: float
                ) -> tuple[int, int, int, int]:
    """The square crop box (source pixels) around a face box, ``margin`` of its side each way."""
    x0, y0, x1, y1 = face
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    left, top = round((x0 + x1) / 2 - side / 2), round((y0 + y1) / 2 - side / 2)
    return (left, top, left + round(side), top + round(side))


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3]; got {tuple(image.shape)}")


def _to_crop_coords(v: float, origin: int, side: int, size: int) -> float:
    """Source-pixel edge coordinate → normalised coordinate of the resized crop."""
    u = (v - origin) * size / side          # edge coordinate in the resized crop
    return float(2.0 * (u - 0.5) / (size - 1) - 1.0)


def _cut(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """``image[box]`` with edge replication outside the image, resized to ``[size, size, 3]``."""
    _check_image(image)
    return _resize(_patch(image[None], box).astype(np.float32), size)[0]


def _patch(frames: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``frames [T, H, W, C][:, box]``, edge-replicated where the box leaves the frame."""
    h, w = frames.shape[1:3]
    x0, y0, x1, y1 = box
    pad = ((0, 0), (max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)), (0, 0))
    if any(any(p) for p in pad):
        frames = np.pad(frames, pad, mode="edge")
    return frames[:, y0 + pad[1][0]:y1 + pad[1][0], x0 + pad[2][0]:x1 + pad[2][0]]


def _resize(patches: np.ndarray, size: int) -> np.ndarray:
    """``[T, h, w, 3]`` float32 → ``[T, size, size, 3]`` in [0, 1] (skimage's linear resize)."""
    n, n_rows, n_cols = patches.shape[:3]
    if (n_rows, n_cols) == (size, size):
        return np.ascontiguousarray(patches, np.float32)
    rows, cols = _resize_matrix(n_rows, size), _resize_matrix(n_cols, size)
    resized_rows = (rows @ patches.reshape(n, n_rows, -1)).reshape(n, size, n_cols, 3)
    # Channels folded into rows so the second product is one GEMM per frame, not size tiny ones.
    by_channel = resized_rows.transpose(0, 1, 3, 2).reshape(n, size * 3, n_cols)
    out = (by_channel @ cols.T).reshape(n, size, 3, size).transpose(0, 1, 3, 2)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: skimage's antialiased linear resize along one axis, as a matrix.

    The resize is linear and separable, so resizing the identity yields its exact operator;
    cropping then costs two small matrix products instead of a filter-and-interpolate pass.
    """
    from skimage.transform import resize

    matrix = resize(np.eye(n_in), (n_out, n_in), order=1, anti_aliasing=n_in > n_out)
    return matrix.astype(np.float32)
