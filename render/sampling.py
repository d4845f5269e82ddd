"""The bilinear sampler both weight-free renderers draw with (docs/design.md, "Renderer").

The source is stored once as a ``[H·W, 12]`` table of each pixel's 2×2 neighbourhood
(edge-replicated), so sampling a frame is one row gather per output pixel and two lerps. The
warp (``render/warp.py``) and the mesh (``render/piecewise.py``) only differ in how they name
positions (normalised vs centred pixel coordinates); both convert to pixel indices and call
:func:`bilinear`.
"""
from __future__ import annotations

import jax.numpy as jnp


def neighbour_table(source: jnp.ndarray) -> jnp.ndarray:
    """``[H, W, 3]`` → ``[H·W, 12]``: each pixel with its right, lower and lower-right
    neighbours (edge-replicated), so bilinear sampling is one row gather per pixel."""
    padded = jnp.pad(source, ((0, 1), (0, 1), (0, 0)), mode="edge")
    h, w = source.shape[:2]
    table = jnp.concatenate([padded[:h, :w], padded[:h, 1:], padded[1:, :w], padded[1:, 1:]], -1)
    return table.reshape(h * w, 12)


def bilinear(table: jnp.ndarray, ix: jnp.ndarray, iy: jnp.ndarray, h: int, w: int
             ) -> jnp.ndarray:
    """Bilinear, border-clamped sampling of the ``[H·W, 12]`` table at pixel positions
    ``ix`` (column), ``iy`` (row) ``[B, ...]`` → ``[B, ..., 3]``."""
    ix = jnp.clip(ix, 0.0, w - 1.0)
    iy = jnp.clip(iy, 0.0, h - 1.0)
    x0 = jnp.minimum(jnp.floor(ix), max(w - 2, 0))
    y0 = jnp.minimum(jnp.floor(iy), max(h - 2, 0))
    fx, fy = (ix - x0)[..., None], (iy - y0)[..., None]
    rows = jnp.take(table, (y0 * w + x0).astype(jnp.int32), axis=0, mode="clip")
    top = rows[..., 0:3] + fx * (rows[..., 3:6] - rows[..., 0:3])
    bottom = rows[..., 6:9] + fx * (rows[..., 9:12] - rows[..., 6:9])
    return top + fy * (bottom - top)
