"""Parameter-free FOMM operations, channels-last: coordinate grid, Gaussians, grid_sample,
anti-aliased downsampling and bilinear resize (FOMM modules/util.py, modules/dense_motion.py).

Coordinates are normalised to [-1, 1] with the last axis (x, y); -1/+1 are the centres of the
first/last pixel (docs/fomm.md, "Tensor conventions", "Coordinate grid and Gaussians").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

HIGHEST = lax.Precision.HIGHEST


def make_coordinate_grid(h: int, w: int) -> jnp.ndarray:
    """``[h, w, 2]`` with element ``[i, j] = (x_j, y_i)``, both endpoints exact (util.py)."""
    x = 2 * (jnp.arange(w, dtype=jnp.float32) / (w - 1)) - 1
    y = 2 * (jnp.arange(h, dtype=jnp.float32) / (h - 1)) - 1
    return jnp.stack([jnp.broadcast_to(x[None, :], (h, w)),
                      jnp.broadcast_to(y[:, None], (h, w))], axis=-1)


def kp2gaussian(value: jnp.ndarray, h: int, w: int, kp_variance: float) -> jnp.ndarray:
    """Unnormalised Gaussians at keypoints: value ``[B, K, 2]`` → ``[B, h, w, K]`` (util.py)."""
    grid = make_coordinate_grid(h, w)                                  # [h, w, 2]
    diff = grid[None, :, :, None, :] - value[:, None, None, :, :]      # [B, h, w, K, 2]
    return jnp.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


def grid_sample(image: jnp.ndarray, grid: jnp.ndarray, align_corners: bool) -> jnp.ndarray:
    """torch ``F.grid_sample`` bilinear with ``padding_mode="zeros"``, channels-last.

    image ``[B, H, W, C]``, grid ``[B, h, w, 2]`` (x → width, y → height) → ``[B, h, w, C]``.
    Out-of-image neighbours contribute 0 (not clamped), as in torch (docs/fomm.md, "grid_sample").
    """
    b, height, width, channels = image.shape
    x, y = grid[..., 0], grid[..., 1]
    # The two unnormalisations of torch's grid_sampler_compute_source_index.
    if align_corners:
        ix = (x + 1) / 2 * (width - 1)
        iy = (y + 1) / 2 * (height - 1)
    else:
        ix = ((x + 1) * width - 1) / 2
        iy = ((y + 1) * height - 1) / 2
    x0 = jnp.floor(ix)
    y0 = jnp.floor(iy)
    wx1, wy1 = ix - x0, iy - y0
    wx0, wy0 = 1 - wx1, 1 - wy1
    flat = image.reshape(b, height * width, channels)
    out_shape = grid.shape[:-1]

    def tap(yy, xx, weight):
        valid = (xx >= 0) & (xx <= width - 1) & (yy >= 0) & (yy <= height - 1)
        index = (jnp.clip(yy, 0, height - 1) * width + jnp.clip(xx, 0, width - 1)).astype(jnp.int32)
        values = jax.vmap(lambda im, i: im[i])(flat, index.reshape(b, -1))
        return values.reshape(out_shape + (channels,)) * jnp.where(valid, weight, 0)[..., None]

    return (tap(y0, x0, wy0 * wx0) + tap(y0, x0 + 1, wy0 * wx1)
            + tap(y0 + 1, x0, wy1 * wx0) + tap(y0 + 1, x0 + 1, wy1 * wx1))


def antialias_kernel(scale: float) -> np.ndarray:
    """The ``[k, k]`` Gaussian of FOMM ``AntiAliasInterpolation2d`` (float32, sums to 1).

    sigma = (1/scale - 1)/2, k = 2·round(4·sigma) + 1 (Python round), docs/fomm.md,
    "Anti-aliased downsampling".
    """
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    mgrid = np.arange(size, dtype=np.float32)
    mean = (size - 1) / 2
    one_d = np.exp(-((mgrid - mean) ** 2) / (2 * sigma ** 2)).astype(np.float32)
    kernel = one_d[:, None] * one_d[None, :]
    return (kernel / kernel.sum()).astype(np.float32)


def _antialias_matrix(size: int, scale: float) -> np.ndarray:
    """``[ceil(size·scale), size]``: row j is the 1-D Gaussian centred on pixel j/scale, cut
    where it would fall on the zero padding (so the padding needs no memory)."""
    one_d = antialias_kernel_1d(scale)
    ka = len(one_d) // 2
    stride = int(1 / scale)  # FOMM int_inv_scale
    rows = np.arange(0, size, stride)
    matrix = np.zeros((len(rows), size), np.float32)
    for j, centre in enumerate(rows):
        for t, weight in enumerate(one_d):
            i = centre + t - ka
            if 0 <= i < size:
                matrix[j, i] = weight
    return matrix


def antialias_kernel_1d(scale: float) -> np.ndarray:
    """The normalised 1-D factor of :func:`antialias_kernel` (their outer product)."""
    sigma = (1 / scale - 1) / 2
    size = 2 * round(sigma * 4) + 1
    mgrid = np.arange(size, dtype=np.float32)
    one_d = np.exp(-((mgrid - (size - 1) / 2) ** 2) / (2 * sigma ** 2)).astype(np.float32)
    return (one_d / one_d.sum()).astype(np.float32)


def antialias_downsample(image: jnp.ndarray, scale: float) -> jnp.ndarray:
    """FOMM ``AntiAliasInterpolation2d``: ``[B, H, W, C]`` → ``[B, H·scale, W·scale, C]``.

    FOMM blurs depthwise with the 13×13 Gaussian (sigma 1.5 at scale 0.25) on a **zero**-padded
    image and keeps pixels 0, s, 2s, ... (``[:, :, ::s, ::s]``; the same pixels as torch 1.0's
    nearest interpolate), docs/fomm.md, "Anti-aliased downsampling". The Gaussian is separable,
    so the same numbers come from two small matrix products (rows, then columns) that only
    compute the kept pixels and treat the zero padding by truncating the kernel: ~10× faster on
    CPU than a grouped conv.
    """
    if scale == 1:
        return image
    _, h, w, _ = image.shape
    rows = jnp.asarray(_antialias_matrix(h, scale))
    cols = jnp.asarray(_antialias_matrix(w, scale))
    out = jnp.einsum("oh,bhwc->bowc", rows, image, precision=HIGHEST)
    return jnp.einsum("pw,bowc->bopc", cols, out, precision=HIGHEST)


def resize_bilinear(x: jnp.ndarray, h: int, w: int) -> jnp.ndarray:
    """``F.interpolate(mode="bilinear", align_corners=False)`` on ``[B, H, W, C]``.

    No antialiasing (torch's bilinear interpolate has none); identity when sizes already match.
    """
    if x.shape[1:3] == (h, w):
        return x
    return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), "linear", antialias=False)
