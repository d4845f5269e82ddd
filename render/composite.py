"""The animated head put back into the whole photo (docs/design.md, "Whole photo").

A rendered frame covers the square crop ``box`` of the photo (``syncers.data.face.FaceCrop.box``,
source pixels, edge coordinates; it may leave the photo). It is resized to the box's side and
blended over the photo with a weight that is 1 inside the crop but for a band along its sides
and falls smoothly to 0 at them: the mesh renderer keeps the crop's border fixed and moves
the band between its ring and the border only a little, so the blend meets the photo without a
seam, and outside the blend region (``blend_weight`` = 0) the output is the photo itself.
The output has the photo's size, cut to even sides (H.264's 4:2:0 needs them).

    out = paste(photo [H, W, 3], frames [T, S, S, 3], box)          # [T, H', W', 3]
"""
from __future__ import annotations

import numpy as np

FEATHER = 0.12      # the blend band along each side of the crop, share of its side
MARGIN = 0.02       # the outermost band kept at weight 0 (the crop's resampled edge pixels)


def even_shape(height: int, width: int) -> tuple[int, int]:
    """The output's ``(height, width)``: the photo's, each cut down to an even number."""
    return height - height % 2, width - width % 2


def blend_weight(side: int) -> np.ndarray:
    """``[side, side]`` in [0, 1]: 0 within ``MARGIN`` of the crop's sides, rising smoothly to 1
    over ``FEATHER`` of its side, 1 inside."""
    centres = np.arange(side) + 0.5
    edge = np.minimum(centres, side - centres) / side                      # [side]
    ramp = np.clip((edge - MARGIN) / FEATHER, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def paste(photo: np.ndarray, frames: np.ndarray,
          box: tuple[int, int, int, int]) -> np.ndarray:
    """``frames [T, S, S, 3]`` (floats in [0, 1]) blended into ``photo [H, W, 3]`` at the square
    ``box (x0, y0, x1, y1)`` → ``[T, H', W', 3]`` float32, ``(H', W') = even_shape(H, W)``."""
    photo = np.asarray(photo, np.float32)
    frames = np.asarray(frames, np.float32)
    if photo.ndim != 3 or photo.shape[-1] != 3:
        raise ValueError(f"photo must be [H, W, 3]; got {tuple(photo.shape)}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"frames must be [T, S, S, 3]; got {tuple(frames.shape)}")
    x0, y0, x1, y1 = (int(v) for v in box)
    side = x1 - x0
    if side <= 0 or y1 - y0 != side:
        raise ValueError(f"box must be a square (x0, y0, x1, y1); got {box}")
    height, width = even_shape(*photo.shape[:2])
    out = np.repeat(photo[None, :height, :width], frames.shape[0], axis=0)
    # the part of the box inside the output
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx0 >= cx1 or cy0 >= cy1 or frames.shape[0] == 0:
        return out
    resized = _resize(frames, side)[:, cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
    weight = blend_weight(side)[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
    region = out[:, cy0:cy1, cx0:cx1]
    out[:, cy0:cy1, cx0:cx1] = np.where(weight > 0, region + weight * (resized - region), region)
    return out


def _resize(frames: np.ndarray, side: int) -> np.ndarray:
    """``[T, S, S, 3]`` → ``[T, side, side, 3]``, linear between pixel centres (as two matrix
    products: ~10× faster on a CPU than a gather-based resize)."""
    n, size = frames.shape[:2]
    if size == side:
        return frames
    m = _linear_matrix(size, side)                                        # [side, S]
    rows = (m @ frames.reshape(n, size, size * 3)).reshape(n, side, size, 3)
    out = rows.transpose(0, 1, 3, 2).reshape(n, side * 3, size) @ m.T         # [n, side·3, side]
    return np.clip(out.reshape(n, side, 3, side).transpose(0, 1, 3, 2), 0.0, 1.0)


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]``: linear interpolation at the output pixels' centres (edges clamped);
    a box average first when shrinking, so nothing aliases."""
    position = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1.0)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    m = np.zeros((n_out, n_in), np.float32)
    np.add.at(m, (np.arange(n_out), low), 1.0 - (position - low))
    np.add.at(m, (np.arange(n_out), high), position - low)
    if n_out < n_in:                     # shrinking: each output averages its input span
        edges = np.linspace(0, n_in, n_out + 1)
        centres = np.arange(n_in) + 0.5
        m = ((centres[None] >= edges[:-1, None]) & (centres[None] < edges[1:, None])
             ).astype(np.float32)
        m /= m.sum(axis=1, keepdims=True)
    return m
