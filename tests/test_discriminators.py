"""D_f and D_s: shapes, window counts, spectral normalisation state, conditioning."""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from generator_helpers import jit

from motion.discriminators import (
    TINY,
    DiscriminatorConfig,
    FrameDiscriminator,
    SequenceDiscriminator,
    _Dense,
    windows,
)


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
    one over the observed frames, the embedding applied per pass (with spectral norm, one
    power iteration each). The reference for the packed recurrence
    (``motion.discriminators.final_states``)."""
    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x_obs, x, update_stats=False):
        c = self.config
        batch, n_obs, n = x.shape[0], x_obs.shape[1], x.shape[1]
        full = jnp.concatenate([x_obs, x], axis=1).reshape(batch, n_obs + n, -1)
        feats = jnp.concatenate([full[:, 1:], full[:, 1:] - full[:, :-1]], axis=-1)
        embed = _Dense(c.seq_embed, c.spectral_norm)
        lstm = nn.RNN(nn.OptimizedLSTMCell(c.seq_hidden), return_carry=True)

        def code(frames):
            (_, hidden), _ = lstm(nn.leaky_relu(embed(frames, update_stats), 0.2))
            return hidden

        obs = jnp.concatenate([full[:, :1], jnp.zeros_like(full[:, :1])], axis=-1)
        cond = _Dense(c.seq_hidden, c.spectral_norm)(
            code(jnp.concatenate([obs, feats[:, :n_obs - 1]], 1)), update_stats)
        head = _Dense(1, c.spectral_norm)
        seq, scores = feats[:, n_obs - 1:], []
        for size in c.windows:
            if size <= n:
                w = windows(seq, size)
                phi = code(w.reshape((-1,) + w.shape[2:])).reshape(batch, w.shape[1], -1)
                scores.append(head(phi, update_stats)[..., 0]
                              + jnp.einsum("bnh,bh->bn", phi, cond))
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
    reference = _PerWindowLSTM(config)
    assert (jax.tree.map(jnp.shape, reference.init(k3, x_obs, x)["params"])
            == jax.tree.map(jnp.shape, variables["params"]))

    def packed(params, x):
        return SequenceDiscriminator(config).apply({"params": params}, x_obs, x)

    def per_window(params, x):
        return reference.apply({"params": params}, x_obs, x)

    def value_and_grads(fn, params):
        return jit(lambda p, x: (fn(p, x), jax.grad(lambda p, x: fn(p, x).sum(),
                                                    argnums=(0, 1))(p, x)))(params, x)

    ours, grad_packed = value_and_grads(packed, variables["params"])
    theirs, grad_ref = value_and_grads(per_window, variables["params"])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_packed[1], grad_ref[1], rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grad_packed[0]), jax.tree.leaves(grad_ref[0])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_packed_lstm_keeps_one_power_iteration_per_embedding_call():
    """With spectral norm and ``update_stats``, D_s's power-iteration vectors and scores equal
    those of one embedding call (one iteration) per window size and the observed frames, as
    D_s trained before the packing (a single call changed a short phantom run's outcome)."""
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    x_obs = jax.random.normal(k1, (2, 3, 10, 6))
    x = jax.random.normal(k2, (2, 40, 10, 6))
    variables = SequenceDiscriminator(TINY).init(k3, x_obs, x)

    def update(module):
        return jit(lambda v: module.apply(v, x_obs, x, update_stats=True,
                                          mutable=["batch_stats"]))(variables)

    (ours, ours_stats), (theirs, theirs_stats) = (update(SequenceDiscriminator(TINY)),
                                                  update(_PerWindowLSTM(TINY)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(ours_stats), jax.tree.leaves(theirs_stats)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # The stats moved: a single call per D forward would leave different vectors.
    assert any(np.abs(np.asarray(a - b)).max() > 1e-4 for a, b in
               zip(jax.tree.leaves(ours_stats), jax.tree.leaves(variables["batch_stats"])))


def test_input_scales_multiply_what_d_reads():
    """input_scale / velocity_scale: D with scale s on x is D with scale 1 on s·x (frames), and
    D_s's velocity channel is scaled on its own."""
    config = dataclasses.replace(TINY, spectral_norm=False)
    scaled = dataclasses.replace(config, input_scale=20.0, velocity_scale=20.0)
    x = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (2, 10, 10, 6))
    obs = 0.3 * jax.random.normal(jax.random.PRNGKey(1), (2, 3, 10, 6))
    frame = FrameDiscriminator(config)
    params = frame.init(jax.random.PRNGKey(2), x)
    np.testing.assert_allclose(FrameDiscriminator(scaled).apply(params, x),
                               frame.apply(params, 20.0 * x), rtol=1e-5, atol=1e-5)
    seq = SequenceDiscriminator(config)
    params = seq.init(jax.random.PRNGKey(3), obs, x)
    np.testing.assert_allclose(SequenceDiscriminator(scaled).apply(params, obs, x),
                               seq.apply(params, 20.0 * obs, 20.0 * x), rtol=1e-4, atol=1e-4)
