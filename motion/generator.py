"""The MS-Sync generator G (paper §3.2, eq. 8–10): one autoregressive step and its parts.

``v_{t+1} = G(x_{0:t}, a_{t+1})`` and ``x_{t+1} = x_t + v_{t+1}`` (eq. 8–9; with
``restore_seconds`` > 0 a leak towards the first frame is added, see :class:`GeneratorConfig`
and docs/design.md, "Long generation"), with
- a keypoint encoder enc: 60 → ``encoder_hidden`` → ``d_model`` MLP (LayerNorm, GELU);
- a causal Transformer over enc(x_0..t) giving h_t (``motion.temporal``, sliding KV cache);
- an audio FPN giving a^i_t for levels i = 1..4 (``motion.fpn``, 25 → 3.125 Hz);
- a multi-scale module: 4 independent MLP branches, branch i reading ``[h_t, enc(x_t),
  a^i_{t+1}]`` and giving ``v^i ∈ R^{10×6}`` and per-keypoint mask logits ``w^i ∈ R^{10}``;
  ``v = Σ_i softmax_i(w)·v^i`` (eq. 10, softmax over the branches, one weight per keypoint
  shared by its 6 values).

The branches are stored stacked (``[levels, ...]``) and run as one batched contraction; the
first layer is split into its ``[h, enc]`` part (one matrix for all branches) and its audio part,
which depends on audio only and is precomputed for every frame outside the rollout's scan
(:meth:`Generator.audio_projections`). These modules define the parameters and evaluate whole
sequences (teacher forcing, the tests' re-encode reference); the rollout (``motion.rollout``)
evaluates one frame at a time with ``motion.decode``, the same function on the same parameters
in a layout that is faster on CPUs.

Branch scales (inference only, :func:`branch_scales`): ``v = Σ_i s_i·m_i·v^i`` with
``s = (lip_scale, 1, head_scale, head_scale)``: the masks m_i are computed as trained, then the
finest branch's share (fast articulation: lips, jaw) and the two coarsest branches' share (slow
motion at 800/1600 ms: head nods and sway) are multiplied. 1 is the trained model; 0 removes
that motion; > 1 exaggerates it. Because x_{t+1} = x_t + v_{t+1}, scaling coarse velocities
scales the head's excursions, not a fixed offset.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from motion.fpn import AudioFPN, lookahead_frames, lookback_frames
from motion.temporal import TemporalTransformer
from syncers.data.layout import FEATURES_PER_FRAME, FPS, KEYPOINT_DIM, N_KEYPOINTS
from syncers.run.config import ranged

# The names of G's layers in its parameter tree, declared once: the modules below take them and
# the per-frame kernel (``motion.decode``) reads the parameters by them. They are the names
# every saved model and checkpoint carries (those Flax gave the first release automatically);
# a layer's name also seeds its initial values, so renaming one would orphan saved models and
# change what a seed trains.
ENCODER_IN, ENCODER_NORM, ENCODER_OUT = "Dense_0", "LayerNorm_0", "Dense_1"
HEAD_STATE = "state_in"


def head_hidden_names(j: int) -> tuple[str, str]:
    """``(weight, bias)`` names of the branches' hidden layer ``j`` (stacked ``[levels, ...]``)."""
    return f"w{j}", f"b{j}"


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Sizes of G. Defaults are the paper's (≈40 M parameters; the paper's code: 41.7 M)."""
    # Upper bounds far above any trainable size: a model.json is untrusted input, and a size
    # of 10⁹ would otherwise build a billion layers before anything could refuse it.
    d_model: int = ranged(512, ge=1, le=16384)
    n_layers: int = ranged(4, ge=1, le=256)
    n_heads: int = ranged(8, ge=1, le=1024)
    d_ff: int = ranged(2048, ge=1, le=65536)
    context: int = ranged(40, ge=1, le=4096)    # frames each attention reads (KV ring buffer)
    encoder_hidden: int = ranged(512, ge=1, le=16384)
    audio_features: int = ranged(26, ge=1, le=1024)
    fpn_channels: int = ranged(512, ge=1, le=16384)
    # kernel-3 convs per FPN level (sets the look-ahead)
    fpn_post_convs: int = ranged(1, ge=0, le=16)
    levels: int = ranged(4, ge=1, le=10)
    branch_hidden: int = ranged(1280, ge=1, le=65536)
    branch_depth: int = ranged(3, ge=1, le=256)  # hidden layers per branch
    obs_len: int = ranged(3, ge=1, le=1024)      # observed (warm-up) frames
    # small first velocities: stable early rollouts
    velocity_init_scale: float = ranged(0.01, ge=0, le=100)
    # Departure from eq. 9 (0 = the paper): x_{t+1} = x_t + v_{t+1} − (x_t − x_anchor)/(25·τ),
    # τ = restore_seconds, x_anchor the first observed frame (x0 at inference). A leaky
    # integrator: a velocity bias b gives a bounded offset 25·τ·b instead of a walk-off that
    # grows with time, and motion slower than 1/(2πτ) Hz is pulled back to the rest pose.
    restore_seconds: float = ranged(0.0, ge=0, le=3600)
    # Departure from the paper (False = the paper): the keypoint encoder also reads x_t − x_anchor
    # (120 inputs, not 60), so G knows where it is relative to the rest pose it started from
    # and can learn to come back to it (docs/design.md, "Long generation").
    anchor_input: bool = False
    # Departure from the paper (None = the paper's centred FPN): frame t reads no audio after
    # t + fpn_lookahead frames, the coarse levels delayed to fit (``motion.fpn``, "Low
    # latency"); the same parameters. 5 frames (200 ms) is the low-latency model's.
    fpn_lookahead: int | None = ranged(None, ge=0, le=1024)

    @property
    def restore_rate(self) -> float:
        """The per-frame leak 1/(25·τ) of :attr:`restore_seconds` (0 when off)."""
        return 1.0 / (FPS * self.restore_seconds) if self.restore_seconds > 0 else 0.0

    @property
    def lookahead(self) -> int:
        """Video frames after t whose audio can change frame t (``motion.fpn``)."""
        return max(lookahead_frames(self.levels, self.fpn_post_convs, self.fpn_lookahead))

    @property
    def lookback(self) -> int:
        """Video frames before t whose audio can change frame t's FPN features
        (``motion.fpn.lookback_frames``): a bounded window of audio computes them."""
        return max(lookback_frames(self.levels, self.fpn_post_convs, self.fpn_lookahead))


PAPER = GeneratorConfig()
SMALL = GeneratorConfig(d_model=128, n_layers=2, n_heads=4, d_ff=512, encoder_hidden=128,
                        fpn_channels=128, branch_hidden=256, branch_depth=2)
TINY = GeneratorConfig(d_model=16, n_layers=2, n_heads=2, d_ff=32, encoder_hidden=16,
                       fpn_channels=8, branch_hidden=16, branch_depth=2,
                       velocity_init_scale=0.1)   # tests only: velocities large enough to test
PRESETS = {"paper": PAPER, "small": SMALL, "tiny": TINY}


def encoder_input(x_Kx6: jax.Array, anchor_Kx6: jax.Array | None) -> jax.Array:
    """The keypoint encoder's input ``[..., 60]``, or ``[..., 120]`` with ``x − anchor`` beside
    ``x`` when the config's ``anchor_input`` is on (``anchor`` broadcasts over ``...``)."""
    flat = x_Kx6.reshape(x_Kx6.shape[:-2] + (N_KEYPOINTS * KEYPOINT_DIM,))
    if anchor_Kx6 is None:
        return flat
    offset = (x_Kx6 - anchor_Kx6).reshape(flat.shape)
    return jnp.concatenate([flat, offset], axis=-1)


class KeypointEncoder(nn.Module):
    hidden: int
    d_model: int

    @nn.compact
    def __call__(self, x_Kx6: jax.Array, anchor_Kx6: jax.Array | None = None) -> jax.Array:
        """``[..., 10, 6]`` (and the anchor frame, when used) → ``[..., d_model]``."""
        x = encoder_input(x_Kx6, anchor_Kx6)
        x = nn.gelu(nn.LayerNorm(name=ENCODER_NORM)(nn.Dense(self.hidden, name=ENCODER_IN)(x)))
        return nn.Dense(self.d_model, name=ENCODER_OUT)(x)


class MultiScaleHead(nn.Module):
    """The 4 branches of eq. 10, stacked: ``[levels, ...]`` parameters, one contraction each."""
    levels: int
    audio_channels: int
    hidden: int
    depth: int
    init_scale: float

    def setup(self):
        n, h = self.levels, self.hidden
        init = nn.initializers.lecun_normal(batch_axis=(0,))
        self.w_audio = self.param("w_audio", init, (n, self.audio_channels, h))   # a^i part
        self.w_state = nn.Dense(n * h, name=HEAD_STATE)                   # [h_t ⊕ enc] → n·h
        self.w_hidden = [self.param(head_hidden_names(j)[0], init, (n, h, h))
                         for j in range(self.depth - 1)]
        self.b_hidden = [self.param(head_hidden_names(j)[1], nn.initializers.zeros, (n, h))
                         for j in range(self.depth - 1)]
        out_init = nn.initializers.variance_scaling(self.init_scale, "fan_in", "normal",
                                                    batch_axis=(0,))
        self.w_out = self.param("w_out", out_init, (n, h, N_KEYPOINTS * (KEYPOINT_DIM + 1)))
        self.b_out = self.param("b_out", nn.initializers.zeros,
                                (n, N_KEYPOINTS * (KEYPOINT_DIM + 1)))

    def audio_projections(self, a_BxAxNxC: jax.Array) -> jax.Array:
        """``[B, A, levels, C]`` → ``[B, A, levels, hidden]``: branch i's first layer on a^i."""
        return jnp.einsum("banc,nch->banh", a_BxAxNxC, self.w_audio)

    def __call__(self, h_BxD, e_BxD, a_proj_BxNxH, scales_N):
        """One step: (v ``[B, 10, 6]``, masks ``[B, levels, 10]`` summing to 1 over levels)."""
        z = self.w_state(jnp.concatenate([h_BxD, e_BxD], axis=-1))
        z = nn.gelu(z.reshape(z.shape[:-1] + (self.levels, self.hidden)) + a_proj_BxNxH)
        for w, b in zip(self.w_hidden, self.b_hidden):
            z = nn.gelu(jnp.einsum("bnh,nhk->bnk", z, w) + b)
        out = jnp.einsum("bnh,nho->bno", z, self.w_out) + self.b_out
        v_i = out[..., :N_KEYPOINTS * KEYPOINT_DIM].reshape(
            out.shape[:-1] + (N_KEYPOINTS, KEYPOINT_DIM))               # [B, n, 10, 6]
        masks = jax.nn.softmax(out[..., N_KEYPOINTS * KEYPOINT_DIM:], axis=1)   # [B, n, 10]
        v = jnp.einsum("bnk,bnkd->bkd", masks * scales_N[:, None], v_i)
        return v, masks


def branch_scales(levels: int, head_scale=1.0, lip_scale=1.0) -> jax.Array:
    """``[levels]`` multipliers of eq. 10's terms: level 1 ← lip_scale, levels 3–4 ← head_scale."""
    scales = jnp.ones((levels,), jnp.float32)
    scales = scales.at[0].set(lip_scale)
    if levels >= 3:
        scales = scales.at[2:4].set(head_scale)
    return scales


class Generator(nn.Module):
    """G's parts; ``motion.rollout`` composes them into the autoregressive rollout."""
    config: GeneratorConfig

    def setup(self):
        c = self.config
        self.encoder = KeypointEncoder(c.encoder_hidden, c.d_model)
        self.temporal = TemporalTransformer(c.d_model, c.n_layers, c.n_heads, c.d_ff, c.context)
        self.fpn = AudioFPN(c.fpn_channels, c.levels, c.fpn_post_convs, c.fpn_lookahead)
        self.head = MultiScaleHead(c.levels, c.fpn_channels, c.branch_hidden, c.branch_depth,
                                   c.velocity_init_scale)

    def __call__(self, x_BxTxKx6, audio_Bx4TxF):
        """Teacher-forced velocities ``[B, T−1, 10, 6]`` (v_{t+1} from true x_0..t); for init."""
        e = self.encode(x_BxTxKx6, x_BxTxKx6[:, :1])
        h = self.temporal.full(e)
        a = self.audio_projections(audio_Bx4TxF)
        step = jax.vmap(self.head, in_axes=(1, 1, 1, None), out_axes=1)
        v, _ = step(h[:, :-1], e[:, :-1], a[:, 1:], jnp.ones((self.config.levels,)))
        return v

    def encode(self, x_Kx6, anchor_Kx6=None):
        """enc(x); ``anchor`` (the first observed frame) is read only with ``anchor_input``."""
        return self.encoder(x_Kx6, anchor_Kx6 if self.config.anchor_input else None)

    def audio_projections(self, audio_Bx4AxF):
        """``[B, 4A, F]`` → ``[B, A, levels, branch_hidden]`` (FPN + first-layer audio part)."""
        return self.head.audio_projections(self.fpn(audio_Bx4AxF))

    def temporal_full(self, e_BxTxD):
        return self.temporal.full(e_BxTxD)

    def velocity(self, h_BxD, e_BxD, a_proj_BxNxH, scales_N):
        return self.head(h_BxD, e_BxD, a_proj_BxNxH, scales_N)


def init_params(config: GeneratorConfig, rng: jax.Array, n_frames: int = 8) -> dict:
    """Fresh parameters of G (``{"params": ...}``-free: the ``params`` collection itself)."""
    x = jnp.zeros((1, n_frames, N_KEYPOINTS, KEYPOINT_DIM), jnp.float32)
    audio = jnp.zeros((1, FEATURES_PER_FRAME * n_frames, config.audio_features), jnp.float32)
    return Generator(config).init(rng, x, audio)["params"]


def count_params(params) -> int:
    return int(sum(p.size for p in jax.tree_util.tree_leaves(params)))
