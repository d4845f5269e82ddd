"""One interface over the three renderers (docs/design.md, "Renderer"): :func:`prepare` builds a
:class:`Renderer` for a source crop whatever its kind, and :meth:`Renderer.chunks` draws driving
keypoints through the one chunk loop (``render.chunked``).

    renderer = prepare("mesh", crop [S, S, 3], kp_source [10, 6], landmarks [68, 2])
    for frames in renderer.chunks(keypoints [T, 10, 6]):      # [n, S, S, 3] float in [0, 1]
        ...

- ``mesh``: the landmark mesh (``render.mesh``), ``landmarks-v1`` keypoints; needs the source's
  68 landmarks;
- ``warp``: the weight-free first-order warp (``render.warp``), any keypoint space;
- ``fomm``: FOMM (``render.fomm``), its own keypoint spaces; needs the loaded model. It draws
  256×256; for another crop size the caller passes ``resize`` (frames, size → frames), which
  takes the source to 256 and the frames back (render keeps no image resizing of its own).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from render import chunked, mesh, warp
from render.keypoints import split

RENDERERS = ("mesh", "warp", "fomm")
FOMM_SIZE = 256               # the vox-256 checkpoints' resolution


@dataclasses.dataclass(frozen=True)
class Renderer:
    """A renderer prepared for one source: ``kind`` (one of :data:`RENDERERS`), ``size`` (S, the
    frames' side), ``chunk`` (driving frames per compiled call) and the jitted call itself,
    ``[chunk, 10, 6]`` → ``[chunk, S, S, 3]``."""

    kind: str
    size: int
    chunk: int
    render_chunk: Callable[[np.ndarray], Any]

    def chunks(self, keypoints_Tx10x6: np.ndarray) -> Iterator[np.ndarray]:
        """Frames ``[n, S, S, 3]`` float32 in [0, 1], in order, ``chunk`` at a time (the last
        may be shorter) for driving keypoints ``[T, 10, 6]`` in the crop's coordinates."""
        keypoints = np.asarray(keypoints_Tx10x6, np.float32)
        if keypoints.ndim != 3 or keypoints.shape[1:] != (10, 6):
            raise ValueError(f"keypoints must be [T, 10, 6]; got {keypoints.shape}")
        return chunked.frames_in_chunks(self.render_chunk, keypoints, self.chunk)

    def render(self, keypoints_Tx10x6: np.ndarray) -> np.ndarray:
        """All frames ``[T, S, S, 3]`` at once (short clips, tests)."""
        parts = list(self.chunks(keypoints_Tx10x6))
        if not parts:
            return np.zeros((0, self.size, self.size, 3), np.float32)
        return np.concatenate(parts)


def prepare(kind: str, crop_image: np.ndarray, kp_source_Kx6: np.ndarray,
            landmarks_68x2: np.ndarray | None = None, fomm: Any = None, *,
            chunk: int | None = None,
            resize: Callable[[np.ndarray, int], np.ndarray] | None = None) -> Renderer:
    """The ``kind`` renderer of ``crop_image [S, S, 3]`` (float in [0, 1]) posed as
    ``kp_source [10, 6]`` (crop coordinates); ``landmarks [68, 2]`` for the mesh, the loaded
    FOMM model for ``fomm`` (and ``resize`` when S ≠ 256). ``chunk``: driving frames per
    compiled call (default: each renderer's own; 1 for a stream)."""
    image = np.asarray(crop_image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"crop_image must be [S, S, 3]; got {image.shape}")
    kp_source = np.asarray(kp_source_Kx6, np.float32)
    if kp_source.shape != (10, 6):
        raise ValueError(f"kp_source must be [10, 6]; got {kp_source.shape}")
    size = image.shape[0]
    if kind == "warp":
        config = warp.WarpConfig() if chunk is None else warp.WarpConfig(chunk=chunk)
        return Renderer(kind, size, config.chunk, warp.chunk_renderer(image, kp_source, config))
    if kind == "mesh":
        if landmarks_68x2 is None:
            raise ValueError("the mesh renderer needs the source's landmarks [68, 2]")
        config = mesh.MeshConfig() if chunk is None else mesh.MeshConfig(chunk=chunk)
        source = mesh.prepare(image, landmarks_68x2)
        return Renderer(kind, size, config.chunk, mesh.chunk_renderer(source, kp_source, config))
    if kind == "fomm":
        if fomm is None:
            raise ValueError("the fomm renderer needs the loaded FOMM model")
        if size != FOMM_SIZE and resize is None:
            raise ValueError(f"the fomm renderer draws {FOMM_SIZE}²; a {size}² crop needs resize")
        return Renderer(kind, size, 4 * fomm.chunk_size if chunk is None else chunk,
                        _fomm_renderer(fomm, image, kp_source, resize))
    raise ValueError(f"unknown renderer {kind!r}: one of {', '.join(RENDERERS)}")


def _fomm_renderer(fomm, image: np.ndarray, kp_source_Kx6: np.ndarray, resize):
    """FOMM's call on absolute keypoints; a crop of another size is resized to 256 and back."""
    kp_source = {k: v[None] for k, v in split(kp_source_Kx6).items()}
    size = image.shape[0]
    source = image if size == FOMM_SIZE else resize(image[None], FOMM_SIZE)[0]

    def render_chunk(part: np.ndarray) -> np.ndarray:
        frames = np.asarray(fomm.render(source, kp_source, split(part))["prediction"])
        return frames if size == FOMM_SIZE else resize(frames, size)

    return render_chunk
