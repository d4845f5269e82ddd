"""Causal Transformer temporal module with a sliding key/value cache (MS-Sync §3.2, h_t).

Pre-LayerNorm encoder layers (d_model, n_heads, d_ff) over the keypoint encodings enc(x_s).
Every layer's attention is causal and *sliding*: frame t attends to frames t−C+1..t of the layer
below (C = ``context`` = 40). Positions are a learned bias per head and per relative offset
0..C−1 added to the attention logits, so only distances matter: the cache can slide forever and
a frame's keys never need re-encoding (absolute positions would change meaning as it slides,
and a 60 s rollout would reach positions never seen in 40-frame training).

Two evaluations of the same function:
- :meth:`TemporalTransformer.full` (here) — all frames at once with a banded causal mask
  ``[T, T]`` (teacher forcing, and the re-encode reference of the tests);
- ``motion.decode.temporal`` — one new frame against a ring buffer of C keys/values per layer:
  slot ``t mod C`` holds frame t, whose offset from the newest frame is ``(t − slot) mod C``;
  slots not written yet (offset > t) are masked. O(C) per frame. It reads these modules'
  parameters in a feature-major layout that is faster on CPUs (see ``motion.decode``).

The paper's code re-encodes the last 40 frames at every step (O(C²) per frame, and h_t sees
exactly 40 frames); with per-layer sliding windows h_t's receptive field grows to
n_layers·(C−1)+1 frames while every attention still reads at most C keys.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MASKED_LOGIT = -1e9      # finite: exp underflows to exactly 0 without inf − inf NaNs


def layer_name(i: int) -> str:
    """Parameter name of layer ``i`` (what saved models carry; ``motion.decode`` reads it)."""
    return f"layers_{i}"


class Layer(nn.Module):
    d_model: int
    n_heads: int
    d_ff: int
    context: int

    def setup(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        self.norm1 = nn.LayerNorm()
        self.qkv = nn.Dense(3 * self.d_model)
        self.proj = nn.Dense(self.d_model)
        self.norm2 = nn.LayerNorm()
        self.ff1 = nn.Dense(self.d_ff)
        self.ff2 = nn.Dense(self.d_model)
        self.rel_bias = self.param("rel_bias", nn.initializers.normal(0.02),
                                   (self.n_heads, self.context))

    def _split(self, x):
        """``[..., 3D]`` → q, k, v each ``[..., H, D/H]``."""
        head = self.d_model // self.n_heads
        q, k, v = jnp.split(x, 3, axis=-1)
        shape = x.shape[:-1] + (self.n_heads, head)
        return q.reshape(shape) * head ** -0.5, k.reshape(shape), v.reshape(shape)

    def _feedforward(self, x):
        return x + self.ff2(nn.gelu(self.ff1(self.norm2(x))))

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        """Full sequence, banded causal mask."""
        n = x_BxTxD.shape[1]
        q, k, v = self._split(self.qkv(self.norm1(x_BxTxD)))          # [B, T, H, Dh]
        offset = jnp.arange(n)[:, None] - jnp.arange(n)[None, :]      # [T(query), T(key)]
        valid = (offset >= 0) & (offset < self.context)
        bias = jnp.where(valid[None], self.rel_bias[:, jnp.clip(offset, 0, self.context - 1)],
                         MASKED_LOGIT)                                     # [H, T, T]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) + bias[None]
        attn = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        x = x_BxTxD + self.proj(attn.reshape(x_BxTxD.shape))
        return self._feedforward(x)


class TemporalTransformer(nn.Module):
    """enc(x_0..t) → h_t (all frames; one frame at a time: ``motion.decode.temporal``)."""
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    context: int

    def setup(self):
        self.layers = [Layer(self.d_model, self.n_heads, self.d_ff, self.context,
                             name=layer_name(i)) for i in range(self.n_layers)]
        self.norm = nn.LayerNorm()

    def full(self, e_BxTxD: jax.Array) -> jax.Array:
        x = e_BxTxD
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)
