"""Weight-free first-order warp renderer (used when no FOMM checkpoint is given).

FOMM's motion model (docs/fomm.md, "Coordinate grid and Gaussians", "DenseMotionNetwork") with
the learned dense-motion network replaced by fixed weights: around each driving keypoint ``k``
a Gaussian ``G_k(z) = exp(−½‖z − p_k^drv‖²/σ²)``, plus a constant background weight,
normalised together (a softmax in log space, so points far from every keypoint get the
background and nothing divides by zero). The backward flow is

    T(z) = Σ_k w_k(z) · (p_k^src + J_k^src (J_k^drv)⁻¹ (z − p_k^drv)) + w_bg(z) · z

and the frame is the source sampled bilinearly at ``T(z)``. Coordinates are normalised (x right,
y down, −1/+1 = centres of the first/last pixel, i.e. align_corners=True); samples outside the
image are clamped to the border (FOMM pads with zeros, but its generator inpaints the dark
border afterwards — here nothing would, so edge replication looks better).

Speed: the flow is smooth, so it is computed on a coarse grid (``flow_size``, default 64²) and
upsampled to full resolution with two small matmuls; the source is stored once per call as a
``[H·W, 12]`` table of each pixel's 2×2 neighbourhood, so sampling a frame is one row gather
per output pixel.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from render import chunked, sampling
from render import keypoints as kp_layout


@dataclasses.dataclass(frozen=True)
class WarpConfig:
    """Hyper-parameters of the warp; hashable, so it is a static jit argument."""

    kp_variance: float = 0.01      # σ² of the keypoint Gaussians, normalised units (FOMM's value)
    background_weight: float = 0.1  # constant weight of the identity motion; 0 = keypoints only
    flow_size: int = 64            # side of the grid the flow is computed on (then upsampled)
    chunk: int = 16                # driving frames per jitted call; the last chunk is padded


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` linear interpolation between grids that share endpoints (align_corners)."""
    pos = np.linspace(0.0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    frac = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1.0 - frac
    if n_in > 1:
        m[np.arange(n_out), lo + 1] += frac
    return m


def _planar_flow(kp_source, kp_driving, h, w, config):
    """The flow as two planes ``(x [B, h, w], y [B, h, w])``.

    Planar ``[B, K, h, w]`` intermediates keep the fast axis long (w) instead of a trailing
    axis of 2, which XLA:CPU vectorises ~5× better.
    """
    src = kp_layout.split(kp_source)
    drv = kp_layout.split(kp_driving)
    x = jnp.linspace(-1.0, 1.0, w, dtype=jnp.float32)[None, None, None, :]
    y = jnp.linspace(-1.0, 1.0, h, dtype=jnp.float32)[None, None, :, None]
    # J_src · J_drv⁻¹ per frame and keypoint, each entry as a [B, K, 1, 1] plane coefficient
    a = jnp.einsum("kij,bkjl->bkil", src["jacobian"], jnp.linalg.inv(drv["jacobian"]))
    a = a[..., None, None]
    dx = x - drv["value"][:, :, 0, None, None]                              # [B, K, h, w]
    dy = y - drv["value"][:, :, 1, None, None]
    moved_x = src["value"][None, :, 0, None, None] + a[:, :, 0, 0] * dx + a[:, :, 0, 1] * dy
    moved_y = src["value"][None, :, 1, None, None] + a[:, :, 1, 0] * dx + a[:, :, 1, 1] * dy
    # Normalised blend of Gaussians and background, computed like a softmax (max subtracted)
    # so it stays finite where every Gaussian underflows, and works with background weight 0.
    logits = -0.5 * (dx * dx + dy * dy) / config.kp_variance
    log_bg = float(np.log(config.background_weight)) if config.background_weight > 0 else -np.inf
    top = jnp.max(logits, axis=1, keepdims=True)
    if config.background_weight > 0:
        top = jnp.maximum(top, log_bg)
    e = jnp.exp(logits - top)                                               # [B, K, h, w]
    e_bg = jnp.exp(log_bg - top[:, 0])                                      # [B, h, w]
    total = e_bg + jnp.sum(e, axis=1)
    flow_x = (e_bg * x[:, 0] + jnp.sum(e * moved_x, axis=1)) / total
    flow_y = (e_bg * y[:, 0] + jnp.sum(e * moved_y, axis=1)) / total
    return flow_x, flow_y


def _sample(table: jnp.ndarray, flow_x: jnp.ndarray, flow_y: jnp.ndarray, h: int, w: int
            ) -> jnp.ndarray:
    """The source table sampled at normalised positions ``flow_x/flow_y [B, H, W]`` →
    ``[B, H, W, 3]`` (``render.sampling.bilinear``; −1/+1 are the first/last pixel centres)."""
    return sampling.bilinear(table, (flow_x + 1.0) * (0.5 * (w - 1)),
                             (flow_y + 1.0) * (0.5 * (h - 1)), h, w)


@functools.partial(jax.jit, static_argnames=("config",))
def _render_chunk(table, kp_source, kp_driving, up_h, up_w, config: WarpConfig):
    h, w = up_h.shape[0], up_w.shape[0]
    coarse_h, coarse_w = up_h.shape[1], up_w.shape[1]
    coarse_x, coarse_y = _planar_flow(kp_source, kp_driving, coarse_h, coarse_w, config)
    flow_x = jnp.einsum("Hh,bhw,Ww->bHW", up_h, coarse_x, up_w)                # [B, H, W]
    flow_y = jnp.einsum("Hh,bhw,Ww->bHW", up_h, coarse_y, up_w)
    return _sample(table, flow_x, flow_y, h, w)


def _check(source, kp_source, kp_driving) -> None:
    if source.ndim != 3 or source.shape[-1] != 3 or min(source.shape[:2]) < 2:
        raise ValueError(f"source must be [H, W, 3] with H, W >= 2; got {tuple(source.shape)}")
    if kp_source.ndim != 2 or kp_source.shape[-1] != 6:
        raise ValueError(f"kp_source must be [K, 6]; got {tuple(kp_source.shape)}")
    if kp_driving.ndim != 3 or kp_driving.shape[1:] != kp_source.shape:
        raise ValueError(f"kp_driving must be [B, K, 6] with K = {kp_source.shape[0]}; "
                         f"got {tuple(kp_driving.shape)}")


def chunk_renderer(source, kp_source, config: WarpConfig = WarpConfig()
                   ) -> Callable[[np.ndarray], jnp.ndarray]:
    """The jitted call of ``source [H, W, 3]`` (float in [0, 1]) posed as ``kp_source [K, 6]``:
    driving keypoints ``[config.chunk, K, 6]`` → frames ``[config.chunk, H, W, 3]``."""
    source = jnp.asarray(source, jnp.float32)
    kp_source = jnp.asarray(kp_source, jnp.float32)
    _check(source, kp_source, np.zeros((1,) + kp_source.shape, np.float32))
    h, w = source.shape[:2]
    coarse_h, coarse_w = min(config.flow_size, h), min(config.flow_size, w)
    up_h = jnp.asarray(_interp_matrix(h, coarse_h))
    up_w = jnp.asarray(_interp_matrix(w, coarse_w))
    table = sampling.neighbour_table(source)
    return lambda part: _render_chunk(table, kp_source, jnp.asarray(part), up_h, up_w, config)


def render_chunks(source, kp_source, kp_driving,
                  config: WarpConfig = WarpConfig()) -> Iterator[np.ndarray]:
    """Yield frames ``[b, H, W, 3]`` float32 in chunks of ``config.chunk`` (the last may be
    shorter). ``source [H, W, 3]`` in [0, 1], ``kp_source [K, 6]``, ``kp_driving [B, K, 6]``.

    Every jitted call has the same shape (``render.chunked``: the last chunk is padded by
    repeating its final frame), so a video of any length compiles once.
    """
    kp_driving = np.asarray(kp_driving, np.float32)
    _check(jnp.asarray(source), jnp.asarray(kp_source), kp_driving)
    return chunked.frames_in_chunks(chunk_renderer(source, kp_source, config), kp_driving,
                                    config.chunk)


def render(source, kp_source, kp_driving, config: WarpConfig = WarpConfig()) -> np.ndarray:
    """Warp ``source [H, W, 3]`` (float, [0, 1]) from ``kp_source [K, 6]`` to every driving pose
    ``kp_driving [B, K, 6]`` → frames ``[B, H, W, 3]`` float32 in [0, 1]."""
    kp_driving = np.asarray(kp_driving, np.float32)
    parts = list(render_chunks(source, kp_source, kp_driving, config))
    if not parts:
        h, w = np.shape(source)[:2]
        return np.zeros((0, h, w, 3), np.float32)
    return np.concatenate(parts, axis=0)
