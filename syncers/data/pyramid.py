"""The temporal pyramid and segment windows (MS-Sync, paper eq. 5).

Level 1 is the input sequence. Level i+1 low-passes level i along time with a (2k+1)-tap filter
(a box by default, the paper's choice; a Gaussian optionally) using reflect padding, then keeps
every other frame. Keypoints ``[T, ...]`` (25 Hz) and audio features ``[4T, ...]`` (100 Hz) are
each filtered at their own rate, so level i of both covers the same time span. A segment is
always 5 frames of its level (20 feature frames): 200, 400, 800 and 1600 ms at levels 1–4.

Everything here is pure ``jax.numpy`` and jit-able; NumPy arrays are accepted (and converted).
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from syncers.data.layout import FEATURES_PER_FRAME

SEGMENT_FRAMES = 5          # motion frames per segment, at every level
AUDIO_SEGMENT_FRAMES = SEGMENT_FRAMES * FEATURES_PER_FRAME   # 20 feature frames per segment


def filter_taps(kind: Literal["box", "gaussian"] = "box", k: int = 3) -> np.ndarray:
    """The normalised ``[2k+1]`` low-pass taps of one pyramid step."""
    if k < 0:
        raise ValueError(f"k must be >= 0; got {k}")
    if kind == "box":
        taps = np.ones(2 * k + 1)
    elif kind == "gaussian":
        # sigma = k/2 puts ±k at two standard deviations: the same support as the box.
        sigma = max(k / 2.0, 1e-6)
        taps = np.exp(-0.5 * (np.arange(-k, k + 1) / sigma) ** 2)
    else:
        raise ValueError(f"kind must be 'box' or 'gaussian'; got {kind!r}")
    return (taps / taps.sum()).astype(np.float32)


def downsample(x: jax.Array, kind: Literal["box", "gaussian"] = "box", k: int = 3) -> jax.Array:
    """One pyramid step over axis 0: filter with reflect padding, then stride 2.

    ``[T, ...]`` → ``[ceil(T/2), ...]``. Needs ``T > k`` for reflect padding.
    """
    x = jnp.asarray(x)
    n_frames = x.shape[0]
    if n_frames <= k:
        raise ValueError(f"a pyramid step needs more than k={k} frames; got {n_frames}")
    taps = jnp.asarray(filter_taps(kind, k), dtype=x.dtype if jnp.issubdtype(
        x.dtype, jnp.floating) else jnp.float32)
    padded = jnp.pad(x, [(k, k)] + [(0, 0)] * (x.ndim - 1), mode="reflect")
    # Only the kept (even) output frames are computed: a strided sum over 2k+1 shifted views.
    n_out = math.ceil(n_frames / 2)
    out = sum(taps[j] * jax.lax.slice_in_dim(padded, j, j + 2 * (n_out - 1) + 1, stride=2)
              for j in range(2 * k + 1))
    return out


def temporal_pyramid(x: jax.Array, levels: int = 4, kind: Literal["box", "gaussian"] = "box",
                     k: int = 3) -> list[jax.Array]:
    """``[T, ...]`` → list of ``levels`` arrays, level i having ``ceil(T / 2**(i-1))`` frames."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1; got {levels}")
    out = [jnp.asarray(x)]
    for _ in range(levels - 1):
        out.append(downsample(out[-1], kind, k))
    return out


def segments(x: jax.Array, centers: jax.Array | Sequence[int], width: int = SEGMENT_FRAMES,
             mode: Literal["clip", "reflect"] = "clip") -> jax.Array:
    """Windows of ``width`` frames centred on ``centers`` (axis 0): ``[T, ...]`` → ``[N, width,
    ...]``.

    Window n covers frames ``centers[n] - width//2 + [0, width)`` (for an even width, one more
    frame before the centre than after). For audio features at the same level, pass
    ``audio_centers(centers, level)`` and ``width = 20``: then feature window n covers the time
    of motion window n. Frames outside ``[0, T)`` are clamped to the edge (``mode="clip"``) or
    mirrored (``"reflect"``); callers that need full windows choose centres far enough inside.
    """
    x = jnp.asarray(x)
    centers = jnp.asarray(centers, dtype=jnp.int32)
    offsets = jnp.arange(width, dtype=jnp.int32) - width // 2
    index = centers[..., None] + offsets                                 # [N, width]
    n_frames = x.shape[0]
    if mode == "clip":
        index = jnp.clip(index, 0, n_frames - 1)
    elif mode == "reflect":
        period = 2 * (n_frames - 1)
        index = jnp.abs(index) % max(period, 1)
        index = jnp.where(index >= n_frames, period - index, index)
    else:
        raise ValueError(f"mode must be 'clip' or 'reflect'; got {mode!r}")
    return x[index]


def audio_centers(motion_centers: jax.Array, level: int = 1) -> jax.Array:
    """Feature-frame centres whose 20-frame windows span the same time as 5-frame motion windows.

    Frame n of level i (stride s = 2**(i-1)) is centred on level-1 frame n·s, at time
    n·s + ½ video frames; feature m of level i at (m·s + ½)/4. Equating the two window
    midpoints gives m = 4n + ½ + 3/(2s): ``4n + 2`` at level 1 and ``4n + 1`` above it (rounded:
    exact at level 1, within half a level-i feature frame above it, 25 ms at level 4).
    """
    return jnp.asarray(motion_centers) * FEATURES_PER_FRAME + audio_center_offset(level)


def audio_center_offset(level: int) -> int:
    """The ``+2`` / ``+1`` of :func:`audio_centers` as a plain int (a constant under ``jit``)."""
    return int(round(0.5 + 1.5 / 2 ** (level - 1)))
