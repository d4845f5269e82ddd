"""Discriminators of the MS-Sync GAN (paper §3.3): D_f on frames, D_s on multi-scale windows.

- ``FrameDiscriminator`` (D_f): an MLP scoring single frames ``[..., 10, 6]`` → ``[...]``.
- ``SequenceDiscriminator`` (D_s): one LSTM encodes windows of 5, 10, 20 and 40 frames of the
  sequence (stride half a window; each frame as [x_t, x_t − x_{t−1}], the first difference
  taken against the last observed frame), giving φ(window); a second pass of the same LSTM
  over the observed frames gives the condition c. A projection head scores each window:
  ``D = ψ(φ) + ⟨E c, φ⟩`` (projection discriminator), ``[B, N_windows]`` scores. Every
  window and the observed frames run through the LSTM in one packed recurrence
  (:func:`final_states`), the same function as one ``nn.RNN`` pass per window size (tested)
  in half the sequential steps.

Spectral normalisation (``flax.linen.SpectralNorm``, one power iteration per call, its vectors
in the ``batch_stats`` collection) wraps every dense layer of both discriminators — D_f's MLP,
D_s's frame embedding, ψ and E. The LSTM's recurrent weights are not normalised: its gates are
already bounded by their sigmoid/tanh. Call with ``update_stats=True`` (and
``mutable=["batch_stats"]``) in D's training step, ``False`` elsewhere.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from motion.generator import KEYPOINT_DIM, N_KEYPOINTS
from syncers.run.config import count, ranged

FRAME = N_KEYPOINTS * KEYPOINT_DIM


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    frame_hidden: int = count(512)
    frame_layers: int = count(3)
    seq_embed: int = count(256)
    seq_hidden: int = count(512)
    windows: tuple[int, ...] = ranged((5, 10, 20, 40), ge=1)   # frames
    spectral_norm: bool = True
    # Departure from the paper (1 = its D): D's inputs are multiplied by these, frames by
    # input_scale and frame-to-frame differences by velocity_scale. A spectrally normalised D is
    # 1-Lipschitz in its input, so real and generated frames that differ by ~0.01 (keypoints in
    # [−1, 1], real talking-head motion) get scores that differ by ~0.01 at most, and the hinge
    # losses sit at 2 whatever D learns; scaling lets D tell them apart (docs/design.md,
    # "Long generation").
    input_scale: float = 1.0
    velocity_scale: float = 1.0


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


class _Kernel(nn.Module):
    """One gate's weights, named and shaped as ``flax.linen.OptimizedLSTMCell`` names them."""
    features: int
    use_bias: bool
    init: Callable

    @nn.compact
    def __call__(self, n_in: int):
        kernel = self.param("kernel", self.init, (n_in, self.features))
        if not self.use_bias:
            return kernel, None
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,))


class _LSTMWeights(nn.Module):
    """The LSTM's parameters in ``OptimizedLSTMCell``'s layout (input kernels ``i*`` without
    bias, recurrent kernels ``h*`` with bias, gates i, f, g, o), so checkpoints written by the
    ``nn.RNN(nn.OptimizedLSTMCell)`` formulation load unchanged. Returns the gates stacked:
    ``w_x [In, 4H]``, ``w_h [H, 4H]``, ``bias [4H]``."""
    hidden: int

    @nn.compact
    def __call__(self, n_in: int):
        x = [_Kernel(self.hidden, False, nn.initializers.lecun_normal(), name=f"i{gate}")(n_in)
             for gate in "ifgo"]
        h = [_Kernel(self.hidden, True, nn.initializers.orthogonal(), name=f"h{gate}")(
            self.hidden) for gate in "ifgo"]
        return (jnp.concatenate([k for k, _ in x], axis=1),
                jnp.concatenate([k for k, _ in h], axis=1),
                jnp.concatenate([b for _, b in h]))


def final_states(w_x, w_h, bias, groups: list[jax.Array]) -> list[jax.Array]:
    """The LSTM's last hidden state for every sequence of every group, from a zero state.

    ``groups[g]`` is ``[N_g, L_g, In]`` (N_g sequences of L_g steps); returns ``[N_g, H]`` per
    group. Every sequence starts at step 0, so all groups run in one pass of max L_g steps:
    the rows are ordered longest group first and, as shorter groups finish, the recurrence
    continues on a shrinking prefix of rows. This replaces one sequential pass per group
    (5 + 10 + 20 + 40 + O steps for D_s) by one of 40 steps with wider matrices, and the
    input projection is one matrix product per segment of steps, outside the recurrence.
    The recurrence itself is :func:`_recurrence` (feature-major, deferred weight gradient).
    """
    order = sorted(range(len(groups)), key=lambda g: -groups[g].shape[1])
    inputs = [groups[g] for g in order]
    rows = [x.shape[0] for x in inputs]
    lengths = [x.shape[1] for x in inputs]
    state = (jnp.zeros((w_h.shape[0], sum(rows)), w_h.dtype),) * 2          # [H, rows]

    finals = {}
    start, n_active = 0, len(order)
    for end in sorted(set(lengths)):
        if end > start:
            active = inputs[:n_active]
            # Project per segment, not per group: the backward then slices and pads
            # In-wide inputs instead of 4H-wide gates.
            x = jnp.concatenate([x[:, start:end] for x in active])          # [rows, T, In]
            gates_in = jnp.einsum("rti,ig->tgr", x, w_x)                   # [T, 4H, rows]
            width = sum(rows[:n_active])
            state = _recurrence(w_h, bias, tuple(s[:, :width] for s in state), gates_in)
        while n_active and lengths[n_active - 1] == end:
            n_active -= 1
            first = sum(rows[:n_active])
            finals[order[n_active]] = state[1][:, first:first + rows[n_active]].T
        start = end
    return [finals[g] for g in range(len(groups))]


@jax.custom_vjp
def _recurrence(w_h, bias, state, gates_in):
    """LSTM steps, feature-major: ``state = (c, h)`` ``[H, R]``, ``gates_in [T, 4H, R]`` (the
    input projection) → the state after T steps, gates i, f, g, o; ``w_h [H, 4H]``.

    Feature-major because a step is a skinny product (R is 8–64 rows for most of D_s's
    steps): ``w_hᵀ[4H, H] @ h[H, R]`` and, backward, ``w_h[H, 4H] @ ∂gates[4H, R]`` both run
    in XLA:CPU's fast layout (``motion.decode``), where row-major ``h @ w_h`` and its
    transpose ran at 2–6 GB/s. The weight gradient is formed after the scan, one product
    over all steps (``Σ_t h_{t−1} ∂gates_tᵀ``), instead of a ``[H, 4H]`` accumulator updated
    every step of the backward loop."""
    return _run_recurrence(w_h.T, w_h, bias[:, None], state, gates_in)[0]


def _run_recurrence(w_hT, w_h, bias_col, state, gates_in):
    """The scan of :func:`_recurrence`: (final state, ``h_{t−1}`` of every step ``[T, H, R]``)."""
    def step(carry, gates_t):
        c, h = carry
        gates = gates_t + _recurrent_product(w_hT, w_h, h) + bias_col
        i, f, g, o = jnp.split(gates, 4, axis=0)
        c_next = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        return (c_next, jax.nn.sigmoid(o) * jnp.tanh(c_next)), h
    return jax.lax.scan(step, state, gates_in)


def _recurrence_fwd(w_h, bias, state, gates_in):
    w_hT, bias_col = w_h.T, bias[:, None]
    final, pull_back, h_prev = jax.vjp(
        lambda state, gates_in: _run_recurrence(w_hT, w_h, bias_col, state, gates_in),
        state, gates_in, has_aux=True)
    return final, (pull_back, h_prev)


def _recurrence_bwd(residuals, ct_final):
    pull_back, h_prev = residuals
    ct_state, ct_gates = pull_back(ct_final)             # ∂gates_t = ∂gates_in_t: [T, 4H, R]
    ct_w_h = jnp.einsum("thr,tgr->hg", h_prev, ct_gates)
    return ct_w_h, ct_gates.sum(axis=(0, 2)), ct_state, ct_gates


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


@jax.custom_vjp
def _recurrent_product(w_hT, w_h, h):
    """``w_hT @ h``; its backward gives ``h`` its cotangent only, as ``w_h @ ct`` (the weight
    gradient is :func:`_recurrence`'s, after the scan)."""
    return w_hT @ h


def _recurrent_product_fwd(w_hT, w_h, h):
    return w_hT @ h, w_h


def _recurrent_product_bwd(w_h, ct):
    return None, None, w_h @ ct


_recurrent_product.defvjp(_recurrent_product_fwd, _recurrent_product_bwd)


class FrameDiscriminator(nn.Module):
    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x_Kx6, update_stats: bool = False):
        """``[..., 10, 6]`` → scores ``[...]``."""
        c = self.config
        z = c.input_scale * x_Kx6.reshape(x_Kx6.shape[:-2] + (FRAME,))
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
        feats = jnp.concatenate([c.input_scale * full[:, 1:],
                                 c.velocity_scale * (full[:, 1:] - full[:, :-1])], axis=-1)
        obs = jnp.concatenate([c.input_scale * full[:, :1], jnp.zeros_like(full[:, :1])],
                              axis=-1)
        obs = jnp.concatenate([obs, feats[:, :n_obs - 1]], axis=1)          # [B, O, 2F]
        seq = feats[:, n_obs - 1:]                                          # [B, T, 2F]
        sizes = [size for size in c.windows if size <= n]
        if not sizes:
            raise ValueError(f"no window of {c.windows} fits a {n}-frame sequence")
        groups = [obs] + [windows(seq, size).reshape((-1, size, seq.shape[-1]))
                          for size in sizes]                                # [N_g, L_g, 2F]
        # One embedding call per group, in this order, as when each group had its own LSTM
        # pass: with update_stats each call is one power iteration of the spectral norm, so
        # D trains as it did then (fewer calls measurably changed a short phantom run).
        embed = _Dense(c.seq_embed, c.spectral_norm)
        lstm = _LSTMWeights(c.seq_hidden, name="OptimizedLSTMCell_0")(c.seq_embed)
        codes = final_states(*lstm, [nn.leaky_relu(embed(g, update_stats), 0.2)
                                     for g in groups])
        cond = _Dense(c.seq_hidden, c.spectral_norm)(codes[0], update_stats)   # E c
        head = _Dense(1, c.spectral_norm)
        scores = []
        for code in codes[1:]:
            phi = code.reshape(batch, -1, code.shape[-1])                   # [B, N, hidden]
            scores.append(head(phi, update_stats)[..., 0] + jnp.einsum("bnh,bh->bn", phi, cond))
        return jnp.concatenate(scores, axis=1)
