"""D_f and D_s: shapes, window counts, spectral normalisation state, conditioning."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generator_helpers import jit
from motion.discriminators import TINY, FrameDiscriminator, SequenceDiscriminator, windows


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
