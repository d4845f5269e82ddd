"""Discriminators of the MS-Sync GAN (paper §3.3): D_f on frames, D_s on multi-scale windows.

- ``FrameDiscriminator`` (D_f): an MLP scoring single frames ``[..., 10, 6]`` → ``[...]``.
- ``SequenceDiscriminator`` (D_s): one LSTM encodes windows of 5, 10, 20 and 40 frames of the
  sequence (stride half a window; each frame as [x_t, x_t − x_{t−1}], the first difference
  taken against the last observed frame), giving φ(window); a second pass of the same LSTM
  over the observed frames gives the condition c. A projection head scores each window:
  ``D = ψ(φ) + ⟨E c, φ⟩`` (projection discriminator), ``[B, N_windows]`` scores.

Spectral normalisation (``flax.linen.SpectralNorm``, one power iteration per call, its vectors
in the ``batch_stats`` collection) wraps every dense layer of both discriminators — D_f's MLP,
D_s's frame embedding, ψ and E. The LSTM's recurrent weights are not normalised: its gates are
already bounded by their sigmoid/tanh. Call with ``update_stats=True`` (and
``mutable=["batch_stats"]``) in D's training step, ``False`` elsewhere.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from motion.generator import KEYPOINT_DIM, N_KEYPOINTS

FRAME = N_KEYPOINTS * KEYPOINT_DIM


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    frame_hidden: int = 512
    frame_layers: int = 3
    seq_embed: int = 256
    seq_hidden: int = 512
    windows: tuple[int, ...] = (5, 10, 20, 40)
    spectral_norm: bool = True


SMALL = DiscriminatorConfig(frame_hidden=128, seq_embed=64, seq_hidden=128)
TINY = DiscriminatorConfig(frame_hidden=16, frame_layers=2, seq_embed=8, seq_hidden=8)


class _Dense(nn.Module):
    """Dense, spectrally normalised when asked."""
    features: int
    spectral_norm: bool

    @nn.compact
    def __call__(self, x, update_stats: bool):
        dense = nn.Dense(self.features)
        if self.spectral_norm:
            return nn.SpectralNorm(dense)(x, update_stats=update_stats)
        return dense(x)


class FrameDiscriminator(nn.Module):
    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x_Kx6, update_stats: bool = False):
        """``[..., 10, 6]`` → scores ``[...]``."""
        c = self.config
        z = x_Kx6.reshape(x_Kx6.shape[:-2] + (FRAME,))
        for _ in range(c.frame_layers):
            z = nn.leaky_relu(_Dense(c.frame_hidden, c.spectral_norm)(z, update_stats), 0.2)
        return _Dense(1, c.spectral_norm)(z, update_stats)[..., 0]


def windows(seq_BxTxF, size: int) -> jax.Array:
    """``[B, T, F]`` → ``[B, N, size, F]``: windows of ``size`` frames, stride ``size // 2``."""
    stride = max(size // 2, 1)
    starts = jnp.arange(0, seq_BxTxF.shape[1] - size + 1, stride)
    index = starts[:, None] + jnp.arange(size)[None]
    return seq_BxTxF[:, index]


class SequenceDiscriminator(nn.Module):
    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x_obs_BxOxKx6, x_BxTxKx6, update_stats: bool = False):
        """Observed ``[B, O, 10, 6]`` + sequence ``[B, T, 10, 6]`` → scores ``[B, N_windows]``
        (windows longer than T are skipped; at least one size must fit)."""
        c = self.config
        batch, n_obs, n = x_BxTxKx6.shape[0], x_obs_BxOxKx6.shape[1], x_BxTxKx6.shape[1]
        full = jnp.concatenate([x_obs_BxOxKx6, x_BxTxKx6], axis=1).reshape(batch, n_obs + n,
                                                                            FRAME)
        feats = jnp.concatenate([full[:, 1:], full[:, 1:] - full[:, :-1]], axis=-1)
        embed = _Dense(c.seq_embed, c.spectral_norm)
        lstm = nn.RNN(nn.OptimizedLSTMCell(c.seq_hidden), return_carry=True)

        def code(frames_NxTx2F):
            z = nn.leaky_relu(embed(frames_NxTx2F, update_stats), 0.2)
            (_, hidden), _ = lstm(z)
            return hidden                                                  # [N, hidden]

        obs = jnp.concatenate([full[:, :1], jnp.zeros_like(full[:, :1])], axis=-1)
        obs = jnp.concatenate([obs, feats[:, :n_obs - 1]], axis=1)          # [B, O, 2F]
        cond = _Dense(c.seq_hidden, c.spectral_norm)(code(obs), update_stats)   # E c
        head = _Dense(1, c.spectral_norm)
        seq = feats[:, n_obs - 1:]                                          # [B, T, 2F]
        scores = []
        for size in c.windows:
            if size > n:
                continue
            w = windows(seq, size)                                          # [B, N, size, 2F]
            phi = code(w.reshape((-1,) + w.shape[2:])).reshape(batch, w.shape[1], -1)
            scores.append(head(phi, update_stats)[..., 0] + jnp.einsum("bnh,bh->bn", phi, cond))
        if not scores:
            raise ValueError(f"no window of {c.windows} fits a {n}-frame sequence")
        return jnp.concatenate(scores, axis=1)
