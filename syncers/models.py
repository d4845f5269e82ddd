"""Syncer networks: ``S^i(a, x) = cos(e_a(a), e_x(x))`` (paper eq. 1; docs/design.md,
"Syncers").

``e_a`` reads a segment of 20 audio-feature frames ``[N, 20, F]``; ``e_x`` reads the 5 motion
frames of the same time span ``[N, 5, M]`` (M = P·D: 60 for 10 keypoints × 6, 2·P for landmark
subsets, so the same code serves ``analyze``). Both are 1-D ConvNeXt-style encoders over time
and end in a ``embed_dim`` (512) unit vector, so the score of a pair is their dot product.

Inputs are standardised inside the module by per-channel ``*_mean``/``*_std`` parameters that
training fills from the data and freezes (``stop_gradient``: Adam's update of a zero gradient
is exactly zero). They travel with the parameters, so every user of a trained syncer — the
generator's ``L_AV^MS`` included — applies the normalisation the syncer was trained with.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from syncers.data.pyramid import AUDIO_SEGMENT_FRAMES, SEGMENT_FRAMES
from syncers.run.config import ranged

# LeCun-uniform initial weights (PyTorch's default family), so that :func:`init_params` can draw
# the same distribution with NumPy (see there).
_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
Dense = functools.partial(nn.Dense, kernel_init=_INIT)

LAYER_SCALE = 0.1
AUDIO_FRAMES = AUDIO_SEGMENT_FRAMES   # 100 Hz feature frames per segment, every level
MOTION_FRAMES = SEGMENT_FRAMES        # motion frames per segment


# Sizes have upper bounds far above any trainable one: a run's saved config.yaml is read back.


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """One encoder: ``depth`` ConvNeXt blocks per stage at ``width`` channels."""
    width: int = ranged(128, ge=1, le=16384)
    depth: int = ranged(2, ge=0, le=256)   # 0: no ConvNeXt blocks (the tests' tiny syncers)
    kernel: int = ranged(5, ge=1, le=255)
    mlp_ratio: int = ranged(4, ge=1, le=64)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Sizes of one syncer (the same for every level)."""
    embed_dim: int = ranged(512, ge=1, le=16384)
    audio: EncoderConfig = EncoderConfig(kernel=7)
    motion: EncoderConfig = EncoderConfig(kernel=3)
    frame_hidden: int = ranged(256, ge=1, le=65536)   # hidden width of e_x's per-frame MLP
    # Subtract each motion segment's mean over its 5 frames: the syncer then sees how the face
    # moves inside the window, not where it sits (speaker shape, slow drift), which otherwise
    # dominates the input at the coarse levels.
    center_motion: bool = False


class DepthwiseConv1D(nn.Module):
    """Per-channel 1-D convolution, 'same' zero padding: ``[N, L, C]`` → ``[N, L, C]``.

    Written as a sum of ``kernel`` shifted, scaled copies: XLA's CPU grouped convolution is
    about 9× slower than this in the backward pass for our shapes (a few channels, L ≤ 20).
    """
    kernel: int

    @nn.compact
    def __call__(self, x_NxLxC):
        length, channels = x_NxLxC.shape[-2:]
        w = self.param("kernel", _INIT, (self.kernel, channels))   # fan-in = kernel
        b = self.param("bias", nn.initializers.zeros, (channels,))
        left = (self.kernel - 1) // 2
        padded = jnp.pad(x_NxLxC, ((0, 0), (left, self.kernel - 1 - left), (0, 0)))
        return b + sum(padded[:, j:j + length] * w[j] for j in range(self.kernel))


class ConvNeXtBlock(nn.Module):
    """1-D ConvNeXt block (Liu et al. 2022): depthwise conv → LN → MLP ×r → residual.

    ``[N, L, C]`` → ``[N, L, C]``.
    """
    kernel: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, x_NxLxC):
        channels = x_NxLxC.shape[-1]
        h = DepthwiseConv1D(self.kernel)(x_NxLxC)
        h = nn.LayerNorm()(h)
        h = nn.gelu(Dense(self.mlp_ratio * channels)(h))
        h = Dense(channels)(h)
        # Layer scale starts small (not ConvNeXt's 1e-6: our runs are short), so each block
        # begins near the identity and deep stacks train stably without warm-up.
        gamma = self.param("layer_scale", nn.initializers.constant(LAYER_SCALE), (channels,))
        return x_NxLxC + gamma * h


class AudioEncoder(nn.Module):
    """``e_a``: ``[N, 20, F]`` → ``[N, embed_dim]`` (not normalised).

    Stem (per-frame Dense) then three stages at 20, 10 and 5 frames, each ``depth`` blocks,
    joined by stride-2 convs; the final 5 frames are flattened (keeping their order, which
    carries the timing a sync score needs) and projected.
    """
    config: EncoderConfig
    embed_dim: int

    @nn.compact
    def __call__(self, a_NxTxF):
        c = self.config
        h = nn.LayerNorm()(Dense(c.width)(a_NxTxF))
        for stage in range(3):
            if stage:
                # A kernel-2, stride-2 conv, as a reshape and a matmul (the faster form on CPU).
                h = nn.LayerNorm()(h)
                h = Dense(c.width)(h.reshape(h.shape[0], h.shape[1] // 2, 2 * h.shape[2]))
            for _ in range(c.depth):
                h = ConvNeXtBlock(c.kernel, c.mlp_ratio)(h)
        h = nn.LayerNorm()(h)
        return Dense(self.embed_dim)(h.reshape(h.shape[0], -1))


class MotionEncoder(nn.Module):
    """``e_x``: ``[N, 5, M]`` → ``[N, embed_dim]`` (not normalised).

    A per-frame MLP embeds each M-dim frame, then ``depth`` ConvNeXt blocks mix the 5 frames;
    flattened and projected like the audio side.
    """
    config: EncoderConfig
    embed_dim: int
    frame_hidden: int

    @nn.compact
    def __call__(self, x_NxTxM):
        c = self.config
        h = nn.gelu(Dense(self.frame_hidden)(x_NxTxM))
        h = nn.LayerNorm()(Dense(c.width)(h))
        for _ in range(c.depth):
            h = ConvNeXtBlock(c.kernel, c.mlp_ratio)(h)
        h = nn.LayerNorm()(h)
        return Dense(self.embed_dim)(h.reshape(h.shape[0], -1))


class Syncer(nn.Module):
    """One level's syncer. ``__call__(audio [..., 20, F], motion [..., 5, M]) -> score [...]``.

    ``embed_audio`` / ``embed_motion`` return unit vectors ``[..., embed_dim]`` for any leading
    shape (flattened internally), so callers can embed candidates ``[B, C, 20, F]`` at once.
    """
    config: ModelConfig
    motion_dim: int
    audio_dim: int = 26

    def setup(self):
        c = self.config
        self.audio_encoder = AudioEncoder(c.audio, c.embed_dim)
        self.motion_encoder = MotionEncoder(c.motion, c.embed_dim, c.frame_hidden)
        self.audio_mean = self.param("audio_mean", nn.initializers.zeros, (self.audio_dim,))
        self.audio_std = self.param("audio_std", nn.initializers.ones, (self.audio_dim,))
        self.motion_mean = self.param("motion_mean", nn.initializers.zeros, (self.motion_dim,))
        self.motion_std = self.param("motion_std", nn.initializers.ones, (self.motion_dim,))

    def embed_audio(self, audio):
        _check_tail(audio, (AUDIO_FRAMES, self.audio_dim), "audio segments")
        mean, std = jax.lax.stop_gradient((self.audio_mean, self.audio_std))
        flat = ((audio - mean) / std).reshape((-1,) + audio.shape[-2:])
        return _unit(self.audio_encoder(flat)).reshape(audio.shape[:-2] + (-1,))

    def embed_motion(self, motion):
        _check_tail(motion, (MOTION_FRAMES, self.motion_dim), "motion segments")
        mean, std = jax.lax.stop_gradient((self.motion_mean, self.motion_std))
        if self.config.center_motion:
            motion = motion - jnp.mean(motion, axis=-2, keepdims=True)
            mean = jnp.zeros_like(mean)
        flat = ((motion - mean) / std).reshape((-1,) + motion.shape[-2:])
        return _unit(self.motion_encoder(flat)).reshape(motion.shape[:-2] + (-1,))

    def __call__(self, audio, motion):
        return cosine(self.embed_audio(audio), self.embed_motion(motion))


def init_params(model: Syncer, seed: int | np.random.SeedSequence) -> dict:
    """``{"params": ...}`` of ``model``, drawn with NumPy from ``seed``.

    The values follow the modules' initialisers (LeCun-uniform kernels, zero biases, unit
    LayerNorm scales, layer scale 0.1, identity normalisers). Why not ``model.init``: on a CPU,
    XLA spends 10–20 s compiling the per-parameter random-number code of ``init`` — longer than
    a small level's training — while the structure alone (``eval_shape``) costs nothing.
    """
    abstract = jax.eval_shape(model.init, jax.random.key(0),
                              jnp.zeros((1, AUDIO_FRAMES, model.audio_dim)),
                              jnp.zeros((1, MOTION_FRAMES, model.motion_dim)))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            limit = np.sqrt(3.0 / np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.uniform(-limit, limit, leaf.shape), leaf.dtype)
        fill = {"scale": 1.0, "layer_scale": LAYER_SCALE, "audio_std": 1.0,
                "motion_std": 1.0}.get(name, 0.0)
        return jnp.full(leaf.shape, fill, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, abstract)


def cosine(e_a, e_x):
    """Score of unit embeddings ``[..., E]`` → ``[...]`` (the paper's S = cos)."""
    return jnp.sum(e_a * e_x, axis=-1)


def neg_l1(e_a, e_x):
    """The ``l1contrast`` score: −‖e_a − e_x‖₁ / √E, in [−2, 0] for unit vectors (like cos)."""
    return -jnp.sum(jnp.abs(e_a - e_x), axis=-1) / jnp.sqrt(e_a.shape[-1])


def score_fn(kind: Literal["cos", "l1"]):
    """The pair score a run was trained with (``l1contrast`` → ``"l1"``, all others cos)."""
    return {"cos": cosine, "l1": neg_l1}[kind]


def _unit(v):
    # The epsilon keeps the gradient finite for an all-zero vector (never reached in practice).
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)


def _check_tail(x, tail: tuple[int, ...], name: str) -> None:
    if tuple(x.shape[-len(tail):]) != tail:
        raise ValueError(f"{name} must have shape [..., {', '.join(map(str, tail))}]; "
                         f"got {list(x.shape)}")
