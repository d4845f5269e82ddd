"""FOMM OcclusionAwareGenerator (modules/generator.py) in Flax, channels-last.

Encoder (SameBlock 7×7 + DownBlocks) → warp the source features by the dense deformation of
the DenseMotionNetwork (bilinear grid_sample) → multiply by the occlusion map (FOMM paper eq. 8)
→ residual bottleneck → UpBlocks → 7×7 conv → sigmoid. No skip connections (Johnson-style).
``encode`` and ``decode`` are separate so a renderer computes the source features once and
reuses them for every driving frame (docs/fomm.md, "OcclusionAwareGenerator").
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from render.fomm.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, conv
from render.fomm.config import GeneratorConfig
from render.fomm.dense_motion import DenseMotionNetwork
from render.fomm.ops import grid_sample, resize_bilinear


def _broadcast(x: jnp.ndarray, b: int) -> jnp.ndarray:
    return jnp.broadcast_to(x, (b,) + x.shape[1:])


class OcclusionAwareGenerator(nn.Module):
    """source ``[B|1, H, W, C]`` + keypoints ``[B, K, ..]`` → prediction ``[B, H, W, C]``."""
    config: GeneratorConfig
    align_corners: bool = True

    def setup(self):
        c = self.config
        self.first = SameBlock2d(c.block_expansion, kernel=7, padding=3)
        self.down_blocks = [
            DownBlock2d(min(c.max_features, c.block_expansion * 2 ** (i + 1)))
            for i in range(c.num_down_blocks)]
        self.up_blocks = [
            UpBlock2d(min(c.max_features, c.block_expansion * 2 ** (c.num_down_blocks - i - 1)))
            for i in range(c.num_down_blocks)]
        width = min(c.max_features, c.block_expansion * 2 ** c.num_down_blocks)
        self.bottleneck = [ResBlock2d(width) for _ in range(c.num_bottleneck_blocks)]
        self.final = conv(c.num_channels, 7, 3)
        self.dense_motion_network = DenseMotionNetwork(c.dense_motion, self.align_corners)

    def encode(self, source: jnp.ndarray) -> jnp.ndarray:
        """source ``[B, H, W, C]`` → features ``[B, H/2^n, W/2^n, F]`` (first + down blocks)."""
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        return out

    def decode(self, source: jnp.ndarray, features: jnp.ndarray, kp_source: dict,
               kp_driving: dict) -> dict:
        """Render driving frames from a source and its :meth:`encode` features.

        source ``[1|B, H, W, C]``, features ``[1|B, h', w', F]``, kp_source and kp_driving
        ``{"value": [1|B, K, 2], "jacobian": [1|B, K, 2, 2]}``; B = driving batch. Returns
        prediction ``[B, H, W, C]``, deformed ``[B, H, W, C]``, mask ``[B, h, w, K+1]``,
        occlusion_map ``[B, h, w]``, sparse_deformed ``[B, K+1, h, w, C]``, deformation
        ``[B, h, w, 2]``.
        """
        b = kp_driving["value"].shape[0]
        source = _broadcast(source, b)
        kp_source = {k: _broadcast(v, b) for k, v in kp_source.items()}
        motion = self.dense_motion_network(source, kp_driving, kp_source)
        deformation = motion["deformation"]
        _, fh, fw, _ = features.shape
        # FOMM deform_input: resize the deformation (bilinear, align_corners=False) if needed.
        out = grid_sample(_broadcast(features, b), resize_bilinear(deformation, fh, fw),
                          self.align_corners)
        result = dict(motion)
        if "occlusion_map" in motion:
            occlusion = resize_bilinear(motion["occlusion_map"][..., None], fh, fw)
            out = out * occlusion
        _, h, w, _ = source.shape
        result["deformed"] = grid_sample(source, resize_bilinear(deformation, h, w),
                                         self.align_corners)
        for block in self.bottleneck:
            out = block(out)
        for block in self.up_blocks:
            out = block(out)
        result["prediction"] = nn.sigmoid(self.final(out))
        return result

    def __call__(self, source: jnp.ndarray, kp_driving: dict, kp_source: dict) -> dict:
        """FOMM's forward(source_image, kp_driving, kp_source)."""
        return self.decode(source, self.encode(source), kp_source, kp_driving)
