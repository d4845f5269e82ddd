"""D_f and D_s: shapes, window counts, spectral normalisation state, conditioning."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generator_helpers import jit
from motion.discriminators import (TINY, DiscriminatorConfig, FrameDiscriminator,
                                   SequenceDiscriminator, windows)


def test_windows_stride_half_the_window():
    seq = jnp.arange(40.0)[None, :, None]
    w = windows(seq, 10)
    assert w.shape == (1, 7, 10, 1)
    np.testing.assert_array_equal(w[0, :, 0, 0], [0, 5, 10, 15, 20, 25, 30])


def test_frame_discriminator_shapes():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 10, 6))
    d = FrameDiscriminator(TINY)
    variables = jit(d.init)(jax.random.PRNGKey(1), x)
    scores = jit(d.apply)(variables, x)
    assert scores.shape == (2, 7)
    # D_f judges single frames: changing frame 3 changes its score and no other.
    changed = jit(d.apply)(variables, x.at[:, 3].add(1.0))
    moved = np.abs(np.asarray(changed - scores)) > 1e-6
    assert moved[:, 3].all() and not np.delete(moved, 3, axis=1).any()


def test_sequence_discriminator_windows_condition_and_spectral_norm():
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    x_obs = jax.random.normal(keys[0], (2, 3, 10, 6))
    x = jax.random.normal(keys[1], (2, 40, 10, 6))
    d = SequenceDiscriminator(TINY)
    variables = jit(d.init)(jax.random.PRNGKey(3), x_obs, x)
    scores, updated = jit(lambda v, o, s: d.apply(v, o, s, update_stats=True,
                                                  mutable=["batch_stats"]))(variables, x_obs, x)
    assert scores.shape == (2, 18 + 7 + 3 + 1)                           # 5, 10, 20, 40 frames
    # power iteration state lives in its collection and moves when updated
    before = jax.tree_util.tree_leaves(variables["batch_stats"])
    after = jax.tree_util.tree_leaves(updated["batch_stats"])
    assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(before, after))
    # the observed frames condition every window's score (projection head)
    score = jit(lambda v, o, s: d.apply(v, o, s))
    other = score(variables, x_obs + 1.0, x)
    assert np.all(np.abs(np.asarray(other - score(variables, x_obs, x))) > 0)
    with pytest.raises(ValueError, match="no window"):
        jax.eval_shape(lambda v, o, s: d.apply(v, o, s), variables, x_obs, x[:, :4])


class _PerWindowLSTM(nn.Module):
    """D_s as first written: one ``nn.RNN(nn.OptimizedLSTMCell)`` pass per window size and
    one over the observed frames, the embedding applied per pass. The reference for the
    packed recurrence (``motion.discriminators.final_states``)."""
    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x_obs, x):
        c = self.config
        batch, n_obs, n = x.shape[0], x_obs.shape[1], x.shape[1]
        full = jnp.concatenate([x_obs, x], axis=1).reshape(batch, n_obs + n, -1)
        feats = jnp.concatenate([full[:, 1:], full[:, 1:] - full[:, :-1]], axis=-1)
        embed = nn.Dense(c.seq_embed)
        lstm = nn.RNN(nn.OptimizedLSTMCell(c.seq_hidden), return_carry=True)

        def code(frames):
            (_, hidden), _ = lstm(nn.leaky_relu(embed(frames), 0.2))
            return hidden

        obs = jnp.concatenate([full[:, :1], jnp.zeros_like(full[:, :1])], axis=-1)
        cond = nn.Dense(c.seq_hidden)(code(jnp.concatenate([obs, feats[:, :n_obs - 1]], 1)))
        head = nn.Dense(1)
        seq, scores = feats[:, n_obs - 1:], []
        for size in c.windows:
            if size <= n:
                w = windows(seq, size)
                phi = code(w.reshape((-1,) + w.shape[2:])).reshape(batch, w.shape[1], -1)
                scores.append(head(phi)[..., 0] + jnp.einsum("bnh,bh->bn", phi, cond))
        return jnp.concatenate(scores, axis=1)


@pytest.mark.parametrize("n_frames", [40, 7])
def test_packed_lstm_equals_one_pass_per_window(n_frames):
    """All windows (and the observed frames) in one packed recurrence give the same scores
    and gradients as one LSTM pass per window size, on the same parameters (same names)."""
    config = dataclasses.replace(TINY, spectral_norm=False)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(n_frames), 3)
    x_obs = jax.random.normal(k1, (3, 3, 10, 6))
    x = jax.random.normal(k2, (3, n_frames, 10, 6))
    variables = SequenceDiscriminator(config).init(k3, x_obs, x)
    flat = {"Dense_0": variables["params"]["_Dense_0"]["Dense_0"],
            "Dense_1": variables["params"]["_Dense_1"]["Dense_0"],
            "Dense_2": variables["params"]["_Dense_2"]["Dense_0"],
            "OptimizedLSTMCell_0": variables["params"]["OptimizedLSTMCell_0"]}
    reference = _PerWindowLSTM(config)
    assert (jax.tree.map(jnp.shape, reference.init(k3, x_obs, x)["params"])
            == jax.tree.map(jnp.shape, flat))

    def packed(params, x):
        return SequenceDiscriminator(config).apply({"params": params}, x_obs, x)

    def per_window(params, x):
        return reference.apply({"params": params}, x_obs, x)

    def value_and_grads(fn, params):
        return jit(lambda p, x: (fn(p, x), jax.grad(lambda p, x: fn(p, x).sum(),
                                                    argnums=(0, 1))(p, x)))(params, x)

    ours, grad_packed = value_and_grads(packed, variables["params"])
    theirs, grad_ref = value_and_grads(per_window, flat)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_packed[1], grad_ref[1], rtol=1e-4, atol=1e-6)
    for ours, theirs in [(grad_packed[0]["OptimizedLSTMCell_0"],
                          grad_ref[0]["OptimizedLSTMCell_0"]),
                         (grad_packed[0]["_Dense_0"]["Dense_0"], grad_ref[0]["Dense_0"])]:
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
