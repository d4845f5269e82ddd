"""FOMM DenseMotionNetwork (modules/dense_motion.py) in Flax, channels-last.

From K keypoint pairs it predicts a dense backward deformation: K sparse motions from the
first-order Taylor expansion around each keypoint (FOMM paper eq. 4,
T_k(z) = J_s,k · J_d,k⁻¹ · (z − kp_d,k) + kp_s,k) plus the identity for the background, combined
with softmax masks (background first) predicted by an hourglass over the source warped by each
motion and the keypoint heatmap differences (paper §3, eq. 5); and an occlusion map (eq. 7).
All of it runs on the anti-aliased, downsampled source (docs/fomm.md,
"DenseMotionNetwork").
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from render.fomm.blocks import ConvParams, Hourglass, conv2d
from render.fomm.config import DenseMotionConfig
from render.fomm.ops import antialias_downsample, grid_sample, kp2gaussian, make_coordinate_grid


def inverse_2x2(m: jnp.ndarray) -> jnp.ndarray:
    """Inverse of ``[..., 2, 2]`` matrices (closed form; torch.inverse to float32 rounding)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    return jnp.stack([jnp.stack([d, -b], -1), jnp.stack([-c, a], -1)], -2) / det[..., None, None]


def sparse_motions(kp_source: dict, kp_driving: dict, h: int, w: int) -> jnp.ndarray:
    """``[B, h, w, K+1, 2]``: identity (background) then T_k(z) for each keypoint."""
    grid = make_coordinate_grid(h, w)                                    # [h, w, 2]
    b = kp_driving["value"].shape[0]
    rel = grid[None, :, :, None, :] - kp_driving["value"][:, None, None]  # [B, h, w, K, 2]
    jac = jnp.matmul(kp_source["jacobian"], inverse_2x2(kp_driving["jacobian"]),
                     precision="highest")                                  # [B, K, 2, 2]
    moved = jnp.einsum("bkrc,bhwkc->bhwkr", jac, rel, precision="highest")
    moved = moved + kp_source["value"][:, None, None]
    identity = jnp.broadcast_to(grid[None, :, :, None, :], (b, h, w, 1, 2))
    return jnp.concatenate([identity, moved], axis=3)


class DenseMotionNetwork(nn.Module):
    """source ``[B, H, W, C]``, keypoints ``[B, K, ..]`` → deformation ``[B, h, w, 2]``, mask
    ``[B, h, w, K+1]``, sparse_deformed ``[B, K+1, h, w, C]``, occlusion_map ``[B, h, w]``."""
    config: DenseMotionConfig
    align_corners: bool = True

    @nn.compact
    def __call__(self, source: jnp.ndarray, kp_driving: dict, kp_source: dict) -> dict:
        c = self.config
        small = antialias_downsample(source, c.scale_factor)              # [B, h, w, C]
        b, h, w, ch = small.shape
        k1 = c.num_kp + 1
        gaussians = (kp2gaussian(kp_driving["value"], h, w, c.kp_variance)
                     - kp2gaussian(kp_source["value"], h, w, c.kp_variance))
        heatmap = jnp.concatenate([jnp.zeros((b, h, w, 1), gaussians.dtype), gaussians], -1)
        motions = sparse_motions(kp_source, kp_driving, h, w)            # [B, h, w, K+1, 2]
        # Warp the source once per motion: fold the K+1 motions into the batch.
        grids = jnp.moveaxis(motions, 3, 1).reshape(b * k1, h, w, 2)
        sources = jnp.repeat(small, k1, axis=0)
        deformed = grid_sample(sources, grids, self.align_corners).reshape(b, k1, h, w, ch)
        # 4(K+1) channels interleaved per motion: [heatmap_k, R_k, G_k, B_k] (torch cat dim 2).
        stacked = jnp.concatenate([heatmap[..., None], jnp.moveaxis(deformed, 1, 3)], -1)
        features = Hourglass(c.block_expansion, k1 * (ch + 1), c.num_blocks, c.max_features,
                             name="hourglass")(stacked.reshape(b, h, w, k1 * (ch + 1)))
        kernel, bias = ConvParams(k1, 7, name="mask")(features.shape[-1])
        if c.estimate_occlusion_map:
            # Same input, so mask and occlusion run as one wider conv (faster on CPU).
            occ_kernel, occ_bias = ConvParams(1, 7, name="occlusion")(features.shape[-1])
            kernel = jnp.concatenate([kernel, occ_kernel], -1)
            bias = jnp.concatenate([bias, occ_bias])
        heads = conv2d(features, kernel, bias, 3)
        mask = nn.softmax(heads[..., :k1], axis=-1)                      # background = channel 0
        deformation = jnp.einsum("bhwk,bhwkd->bhwd", mask, motions, precision="highest")
        out = {"mask": mask, "sparse_deformed": deformed, "deformation": deformation}
        if c.estimate_occlusion_map:
            out["occlusion_map"] = nn.sigmoid(heads[..., k1])
        return out
