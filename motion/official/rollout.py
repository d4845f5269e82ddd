"""The released generator's forward pass as one ``lax.scan`` over frames
(``DynamicalModel.forward``; paper eq. 8–9; docs/design.md, "Released MS-Sync model").

Frames k = 0..O+S−2 (O = obs_len warm-up frames, S − 1 generated ones): frame k's input is the
observed ``inpt[k]`` during the warm-up (k < O) and the previous frame's output after it; it is
encoded, appended to the context, the causal Transformer re-encodes the context and ``h`` is
read at frame k; the output is ``input + v`` with v read from the audio streams at k + 1.
``obs_outputs`` are the outputs of frames 0..O−2, ``outputs`` those of frames O−1 onwards. The
official code runs the warm-up as one causal pass over all O frames and then re-encodes the last
≤ 40 frames at every generated frame; a causal pass gives every frame what a step-by-step pass
gives it, so here both are the same step with a different window: frames ≥ max(0, k − 39)
after the warm-up, every frame from 0 during it.

There is no positional encoding: a frame's output depends on which frames are in the window, so
when the window slides every position changes and nothing beyond the first layer's projections
can be cached. The scan keeps the context in a fixed ring of C = max(40, O) slots (frame τ in
slot τ mod C), with the first layer's q/k/v of each frame computed once when it enters; a
slot's frame is known from k, so the causal mask over the ring is ``window ≤ τ_key ≤ τ_query``.
Only the last layer's newest query is computed (earlier positions of the last layer are never
read). Slots outside the window attend to themselves so that every softmax row is finite; no
slot inside reads them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from motion.official.config import CONTEXT, OfficialConfig
from motion.official.network import (
    HIGHEST,
    after_attention,
    attend,
    audio_streams,
    dense,
    encode_keypoints,
    prepare,
    qkv,
    temporal_layers,
    velocity,
)


def _step(params, weights, config: OfficialConfig, scales, inpt_OxBxKxD, carry, xs):
    """Frame k (module docstring): carry ``(previous output [B, 10, d], ring of enc(x) [B, C,
    E], ring of the first layer's q/k/v [B, C, 3E])``, xs ``(k, audio streams [B, 4, A])``."""
    previous, ring_x, ring_qkv = carry
    k, audio_BxGxA = xs
    n_obs, e = inpt_OxBxKxD.shape[0], config.coord_dim
    slots = ring_x.shape[1]
    x = jnp.where(k < n_obs, inpt_OxBxKxD[jnp.minimum(k, n_obs - 1)], previous)
    layers = temporal_layers(params, config)
    coord = encode_keypoints(params["encoder_x"], x.reshape(x.shape[0], -1))   # [B, E]
    projected = qkv(layers[0], coord)                                          # [B, 3E]
    slot = k % slots
    ring_x = jax.lax.dynamic_update_slice_in_dim(ring_x, coord[:, None], slot, axis=1)
    ring_qkv = jax.lax.dynamic_update_slice_in_dim(ring_qkv, projected[:, None], slot, axis=1)
    times = k - (k - jnp.arange(slots)) % slots                                # slot → frame
    start = jnp.where(k < n_obs, 0, jnp.maximum(k - (CONTEXT - 1), 0))
    inside = times >= start
    if len(layers) == 1:
        newest, query = coord, projected[:, :e]
        key, value = ring_qkv[..., e:2 * e], ring_qkv[..., 2 * e:]
    else:
        causal = (inside[None, :] & (times[None, :] <= times[:, None])) | jnp.eye(slots,
                                                                                  dtype=bool)
        hidden, proj = ring_x, ring_qkv
        for n, p_layer in enumerate(layers[:-1]):
            if n:
                proj = qkv(p_layer, hidden)
            hidden = after_attention(p_layer, hidden, attend(
                proj[..., :e], proj[..., e:2 * e], proj[..., 2 * e:], causal, config.nheads_tf))
        attn = layers[-1]["self_attn"]
        newest = jax.lax.dynamic_index_in_dim(hidden, slot, axis=1, keepdims=False)
        key_value = (jnp.matmul(hidden, attn["in_proj_kernel"][:, e:], precision=HIGHEST)
                     + attn["in_proj_bias"][e:])
        key, value = key_value[..., :e], key_value[..., e:]
        query = (jnp.matmul(newest, attn["in_proj_kernel"][:, :e], precision=HIGHEST)
                 + attn["in_proj_bias"][:e])
    attended = attend(query[:, None], key, value, inside[None, :], config.nheads_tf)[:, 0]
    h = dense(params["lin_out"], after_attention(layers[-1], newest, attended))
    out = x + velocity(weights, h, coord, audio_BxGxA, config, scales)
    return (out, ring_x, ring_qkv), out


def rollout(params, inpt_BxOxKxD, streams_BxTxGxA, n_steps: int, *, config: OfficialConfig,
            scales=None):
    """Warm-up on ``inpt [B, O, 10, d]`` and ``n_steps`` generated frames, reading the audio
    streams ``[B, T, 4, A]`` (:func:`motion.official.network.audio_streams`, T ≥ O + 1 +
    n_steps; rows past that are never read) → ``(obs_outputs [B, O−1, 10, d], outputs [B,
    1 + n_steps, 10, d])``. ``scales``: :func:`motion.official.network.stream_scales` or None
    (the model as trained). Jit with ``n_steps`` and ``config`` static."""
    batch, n_obs = inpt_BxOxKxD.shape[:2]
    n_frames = n_obs + n_steps
    slots = max(CONTEXT, n_obs)
    weights = prepare(params, config)
    audio = jnp.moveaxis(streams_BxTxGxA[:, 1:n_frames + 1], 1, 0)             # [F, B, 4, A]
    ring = jnp.zeros((batch, slots, config.coord_dim), jnp.float32)
    carry = (inpt_BxOxKxD[:, 0], ring, jnp.zeros((batch, slots, 3 * config.coord_dim)))
    inpt_OxBxKxD = jnp.moveaxis(inpt_BxOxKxD, 1, 0)

    def step(carry, xs):
        return _step(params, weights, config, scales, inpt_OxBxKxD, carry, xs)

    _, frames = jax.lax.scan(step, carry, (jnp.arange(n_frames, dtype=jnp.int32), audio))
    frames = jnp.moveaxis(frames, 0, 1)                                        # [B, F, 10, d]
    return frames[:, :n_obs - 1], frames[:, n_obs - 1:]


def forward(params, inpt_BxOxKxD, audio_BxLxF, *, config: OfficialConfig, scales=None):
    """``DynamicalModel.forward``: ``inpt [B, O, 10, d]``, ``audio [B, L, 26]`` (L = 4·(O + S)
    normally; any L with L // 4 ≥ O + 1) → ``(obs_outputs [B, O−1, 10, d], outputs [B, S, 10,
    d])`` with S = L // 4 − O. Jit with ``config`` static."""
    n_steps = audio_BxLxF.shape[1] // 4 - inpt_BxOxKxD.shape[1] - 1
    if n_steps < 0:
        raise ValueError(f"audio must hold at least 4·(obs_len + 1) rows; got "
                         f"{audio_BxLxF.shape[1]}")
    streams = audio_streams(params, audio_BxLxF, config)
    return rollout(params, inpt_BxOxKxD, streams, n_steps, config=config, scales=scales)
