"""FOMM KPDetector (modules/keypoint_detector.py) in Flax, channels-last.

Keypoints are expectations of softmax heatmaps (FOMM paper §3, "keypoint detector"): the
hourglass output goes through an unpadded 7×7 ``kp`` conv (58×58 maps at vox-256), a softmax
over positions at temperature 0.1, and value_k = Σ_p heatmap_k(p)·grid(p) on a grid of the
*heatmap's* size. The jacobian head (also unpadded) gives 4 maps per keypoint, pooled with the
same heatmap and read row-major as [[m0, m1], [m2, m3]] (docs/fomm.md, "KPDetector").
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from render.fomm.blocks import ConvParams, Hourglass, conv2d
from render.fomm.config import KPDetectorConfig
from render.fomm.ops import antialias_downsample, make_coordinate_grid


class KPDetector(nn.Module):
    """images ``[B, H, W, C]`` in [0, 1] → ``{"value": [B, K, 2], "jacobian": [B, K, 2, 2]}``."""
    config: KPDetectorConfig

    @nn.compact
    def __call__(self, images: jnp.ndarray) -> dict[str, jnp.ndarray]:
        c = self.config
        x = antialias_downsample(images, c.scale_factor)
        features = Hourglass(c.block_expansion, c.num_channels, c.num_blocks, c.max_features,
                             name="predictor")(x)
        num_maps = 1 if c.single_jacobian_map else c.num_kp
        in_features = features.shape[-1]
        kp_kernel, kp_bias = ConvParams(c.num_kp, 7, name="kp")(in_features)
        jac_kernel, jac_bias = ConvParams(4 * num_maps, 7, name="jacobian")(in_features)
        # Both heads read the same features: one wider conv is ~2× faster on CPU than two.
        heads = conv2d(features, jnp.concatenate([kp_kernel, jac_kernel], -1),
                       jnp.concatenate([kp_bias, jac_bias]), c.pad)
        logits, jac_map = heads[..., :c.num_kp], heads[..., c.num_kp:]  # K, 4·maps channels
        b, h, w, k = logits.shape
        heatmap = nn.softmax(logits.reshape(b, h * w, k) / c.temperature, axis=1)
        grid = make_coordinate_grid(h, w).reshape(h * w, 2)
        value = jnp.einsum("bpk,pd->bkd", heatmap, grid, precision="highest")
        # Channel 4k + m belongs to keypoint k (torch view(B, maps, 4, H, W)).
        jac_map = jac_map.reshape(b, h * w, num_maps, 4)
        jacobian = jnp.einsum("bpk,bpkm->bkm", heatmap, jnp.broadcast_to(
            jac_map, (b, h * w, k, 4)), precision="highest")
        return {"value": value, "jacobian": jacobian.reshape(b, k, 2, 2)}
