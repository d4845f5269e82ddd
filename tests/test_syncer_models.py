"""Syncer encoders: shapes, unit embeddings, the score, initialisation, frozen normalisers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from syncers.models import EncoderConfig, ModelConfig, Syncer, init_params

# Eager Flax runs op by op and compiles each: the tests jit whole functions instead.
TINY = ModelConfig(embed_dim=16, frame_hidden=8, audio=EncoderConfig(8, 1, 3),
                   motion=EncoderConfig(8, 1, 3))
SHALLOW = ModelConfig(embed_dim=16, frame_hidden=8, audio=EncoderConfig(8, 0, 3),
                      motion=EncoderConfig(8, 0, 3))


@pytest.fixture(scope="module")
def syncer():
    model = Syncer(TINY, motion_dim=12, audio_dim=26)
    return model, init_params(model, 0)


def test_shapes_unit_norm_and_cosine(syncer):
    model, params = syncer
    rng = np.random.default_rng(0)
    audio = jnp.asarray(rng.standard_normal((2, 3, 20, 26)), jnp.float32)
    motion = jnp.asarray(rng.standard_normal((2, 5, 12)), jnp.float32)

    @jax.jit
    def run(params, audio, motion):
        return (model.apply(params, audio, method=Syncer.embed_audio),
                model.apply(params, motion, method=Syncer.embed_motion),
                model.apply(params, audio[:, 0], motion),
                model.apply(params, audio[1, 2], method=Syncer.embed_audio))

    e_a, e_x, score, alone = run(params, audio, motion)
    assert e_a.shape == (2, 3, 16) and e_x.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(e_a, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(score, np.sum(np.asarray(e_a[:, 0]) * np.asarray(e_x), -1),
                               rtol=1e-5, atol=1e-6)
    # Segments are embedded independently: batching changes nothing.
    np.testing.assert_allclose(alone, e_a[1, 2], rtol=1e-5, atol=1e-6)


def test_wrong_shapes_are_refused(syncer):
    model, params = syncer
    with pytest.raises(ValueError, match=r"\[..., 20, 26\]"):
        model.apply(params, jnp.zeros((2, 19, 26)), method=Syncer.embed_audio)
    with pytest.raises(ValueError, match=r"\[..., 5, 12\]"):
        model.apply(params, jnp.zeros((2, 5, 60)), method=Syncer.embed_motion)


def test_init_params_matches_flax_structure_and_is_seeded(syncer):
    model, params = syncer
    reference = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 20, 26)),
                               jnp.zeros((1, 5, 12)))
    assert jax.tree.structure(params) == jax.tree.structure(reference)
    assert jax.tree.map(lambda a: a.shape, params) == jax.tree.map(lambda a: a.shape, reference)
    again, other = init_params(model, 0), init_params(model, 1)
    leaves = zip(jax.tree.leaves(params), jax.tree.leaves(again), jax.tree.leaves(other))
    differs = False
    for a, b, c in leaves:
        np.testing.assert_array_equal(a, b)
        differs |= not np.array_equal(a, c)
    assert differs


def test_normalisers_are_frozen():
    model = Syncer(SHALLOW, motion_dim=12, audio_dim=26)
    params = init_params(model, 0)

    def loss(p):
        a = jnp.ones((2, 20, 26))
        x = jnp.ones((2, 5, 12))
        return jnp.sum(model.apply(p, a, x))

    grads = jax.jit(jax.grad(loss))(params)["params"]
    for name in ("audio_mean", "audio_std", "motion_mean", "motion_std"):
        assert not np.any(grads[name]), name
    assert np.any(grads["audio_encoder"]["Dense_0"]["kernel"])


def test_centred_motion_ignores_where_the_face_sits():
    """``center_motion``: a segment and the same segment shifted by a constant embed equally
    (speaker shape and slow drift are not sync cues), while a change of motion inside the
    window still changes the embedding."""
    import dataclasses
    model = Syncer(dataclasses.replace(TINY, center_motion=True), motion_dim=12, audio_dim=26)
    params = init_params(model, 0)
    rng = np.random.default_rng(1)
    motion = rng.standard_normal((3, 5, 12)).astype(np.float32)
    offset = rng.standard_normal((3, 1, 12)).astype(np.float32)
    moved = motion.copy()
    moved[:, 2] += 1.0
    embed = jax.jit(lambda m: model.apply(params, m, method=Syncer.embed_motion))
    base = np.asarray(embed(motion))
    np.testing.assert_allclose(embed(motion + offset), base, atol=1e-5)
    assert np.min(np.linalg.norm(np.asarray(embed(moved)) - base, axis=-1)) > 1e-2
