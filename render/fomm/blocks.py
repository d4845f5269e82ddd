"""FOMM building blocks (modules/util.py) in Flax linen, channels-last ``[B, H, W, C]``.

Module and attribute names follow the PyTorch ones (``conv``, ``norm``, ``down_blocks_0`` for
``down_blocks.0``) so the converter maps state-dict keys mechanically. Every convolution is
zero-padded, biased and runs at ``Precision.HIGHEST``: TF32 on GPUs moves the prediction by
4e-3, beyond the parity budget (docs/fomm.md, "Numerical budget"). BatchNorm always uses the
running statistics with eps 1e-5 (eval mode, as demo.py runs it; docs/fomm.md, "Building
blocks").
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from render.fomm.ops import HIGHEST


def conv(features: int, kernel: int, padding: int, name: str | None = None) -> nn.Conv:
    """torch ``nn.Conv2d(.., kernel, padding=padding)``: stride 1, zero padding, bias."""
    return nn.Conv(features, (kernel, kernel), padding=((padding, padding), (padding, padding)),
                   precision=HIGHEST, name=name)


class ConvParams(nn.Module):
    """The ``kernel`` ``[k, k, in, out]`` and ``bias`` of a conv, without applying it.

    Lets several convs over the same input run as one wider conv (:func:`conv2d`) while their
    parameters keep their own names, so checkpoints still map one-to-one.
    """
    features: int
    kernel: int

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel, self.kernel, in_features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros, (self.features,))


def conv2d(x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray, padding: int) -> jnp.ndarray:
    """Zero-padded stride-1 cross-correlation ``[B, H, W, in]`` → ``[B, H', W', out]``."""
    out = lax.conv_general_dilated(x, kernel, (1, 1), ((padding, padding), (padding, padding)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST)
    return out + bias


def batch_norm(name: str) -> nn.BatchNorm:
    """``SynchronizedBatchNorm2d`` in eval mode: running mean/var, eps 1e-5, affine."""
    return nn.BatchNorm(use_running_average=True, epsilon=1e-5, momentum=0.9, name=name)


def upsample2(x: jnp.ndarray) -> jnp.ndarray:
    """``F.interpolate(scale_factor=2)`` (mode nearest): every pixel repeated 2×2."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def avg_pool2(x: jnp.ndarray) -> jnp.ndarray:
    """``nn.AvgPool2d((2, 2))``: stride 2, no padding (all sizes are even)."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class SameBlock2d(nn.Module):
    """conv → BN → ReLU (util.SameBlock2d)."""
    features: int
    kernel: int = 3
    padding: int = 1

    @nn.compact
    def __call__(self, x):
        x = conv(self.features, self.kernel, self.padding, "conv")(x)
        return nn.relu(batch_norm("norm")(x))


class DownBlock2d(nn.Module):
    """conv → BN → ReLU → 2×2 average pool (util.DownBlock2d)."""
    features: int
    kernel: int = 3
    padding: int = 1

    @nn.compact
    def __call__(self, x):
        x = conv(self.features, self.kernel, self.padding, "conv")(x)
        return avg_pool2(nn.relu(batch_norm("norm")(x)))


class UpBlock2d(nn.Module):
    """nearest ×2 → conv 3×3 → BN → ReLU (util.UpBlock2d)."""
    features: int

    @nn.compact
    def __call__(self, x):
        x = conv(self.features, 3, 1, "conv")(upsample2(x))
        return nn.relu(batch_norm("norm")(x))


class ResBlock2d(nn.Module):
    """Pre-activation residual: BN → ReLU → conv → BN → ReLU → conv, + input (util.ResBlock2d)."""
    features: int

    @nn.compact
    def __call__(self, x):
        out = conv(self.features, 3, 1, "conv1")(nn.relu(batch_norm("norm1")(x)))
        out = conv(self.features, 3, 1, "conv2")(nn.relu(batch_norm("norm2")(out)))
        return out + x


class Encoder(nn.Module):
    """Hourglass encoder: returns ``[input, block_0(input), ...]`` (num_blocks + 1 tensors)."""
    block_expansion: int
    in_features: int
    num_blocks: int
    max_features: int

    @nn.compact
    def __call__(self, x) -> list:
        outs = [x]
        for i in range(self.num_blocks):
            features = min(self.max_features, self.block_expansion * 2 ** (i + 1))
            outs.append(DownBlock2d(features, name=f"down_blocks_{i}")(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: up-block then concatenate ``[up, skip]`` (channel order matters,
    docs/fomm.md, "Hourglass").

    Output channels: block_expansion + in_features (learned features first, raw input last).
    """
    block_expansion: int
    num_blocks: int
    max_features: int

    @nn.compact
    def __call__(self, skips: Sequence[jnp.ndarray]) -> jnp.ndarray:
        skips = list(skips)
        out = skips.pop()
        for n, i in enumerate(reversed(range(self.num_blocks))):
            features = min(self.max_features, self.block_expansion * 2 ** i)
            out = UpBlock2d(features, name=f"up_blocks_{n}")(out)
            out = jnp.concatenate([out, skips.pop()], axis=-1)
        return out


class Hourglass(nn.Module):
    """U-Net style hourglass (util.Hourglass): ``[B, H, W, in]`` → ``[B, H, W, exp + in]``."""
    block_expansion: int
    in_features: int
    num_blocks: int = 3
    max_features: int = 256

    @nn.compact
    def __call__(self, x):
        skips = Encoder(self.block_expansion, self.in_features, self.num_blocks,
                        self.max_features, name="encoder")(x)
        return Decoder(self.block_expansion, self.num_blocks, self.max_features,
                       name="decoder")(skips)
