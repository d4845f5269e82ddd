"""The rollout (KV cache vs re-encode, causality, gradients, long sequences) and generate()."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from generator_helpers import jit, rollout_reencode, tiny_params
from tolerance import assert_close

from motion import generate as gen
from motion import model as model_lib
from motion.generator import TINY
from motion.rollout import rollout

TINY_RESTORE = dataclasses.replace(TINY, restore_seconds=0.4)     # a strong leak, to see it
TINY_ANCHOR = dataclasses.replace(TINY_RESTORE, anchor_input=True)  # and x − x0 as an input
ROLL = jit(rollout, static_argnames=("n_frames", "config", "unroll"))
REENCODE = jit(rollout_reencode, static_argnames=("n_frames", "config"))


@pytest.fixture(scope="module")
def params():
    return tiny_params(TINY)


def _inputs(batch, n_frames, seed=1, config=TINY):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    x_obs = 0.3 * jax.random.normal(k1, (batch, config.obs_len, 10, 6))
    audio = jax.random.normal(k2, (batch, 4 * (config.obs_len + n_frames), 26))
    return x_obs, audio


def test_shapes_and_errors(params):
    x_obs, audio = _inputs(2, 10)
    assert ROLL(params, x_obs, audio, n_frames=10, config=TINY).shape == (2, 10, 10, 6)
    with pytest.raises(ValueError, match="x_obs"):
        rollout(params, x_obs[..., :5], audio, 10, config=TINY)
    with pytest.raises(ValueError, match="A ≥ O \\+ n_frames"):
        rollout(params, x_obs, audio, 11, config=TINY)
    with pytest.raises(ValueError, match="audio_features"):
        rollout(params, x_obs, audio[:1], 10, config=TINY)


@pytest.mark.parametrize("config", [TINY, TINY_RESTORE, TINY_ANCHOR],
                         ids=["paper", "restore", "anchor"])
def test_kv_cache_equals_reencode_past_the_context(config):
    params = tiny_params(config)
    n_frames = 60
    x_obs, audio = _inputs(2, n_frames, seed=6)
    fast = ROLL(params, x_obs, audio, n_frames=n_frames, config=config)
    slow = REENCODE(params, x_obs, audio, n_frames=n_frames, config=config)
    assert n_frames + config.obs_len > config.context                           # the cache slid
    assert float(jnp.abs(fast[:, -1] - x_obs[:, -1]).max()) > 0.1        # frames really move
    assert_close(fast, slow, rel=2e-6)            # values up to ~14: ulps of the largest
    scaled = ROLL(params, x_obs, audio, n_frames=n_frames, config=config, head_scale=0.5,
                  lip_scale=2.0)
    scaled_slow = REENCODE(params, x_obs, audio, n_frames=n_frames, config=config,
                           head_scale=0.5, lip_scale=2.0)
    assert_close(scaled, scaled_slow, rel=2e-6)


def test_audio_lookahead_bounds_what_a_frame_reads(params):
    n_frames, reach, obs = 50, TINY.lookahead, TINY.obs_len
    x_obs, audio = _inputs(1, n_frames + reach, seed=7)
    base = ROLL(params, x_obs, audio, n_frames=n_frames, config=TINY)
    t = 17          # absolute frame index, ≡ 1 mod 8: every level reaches its furthest
    k = t - obs                                                          # its output row
    later = audio.at[:, 4 * (t + reach + 1):].add(1.0)
    out = ROLL(params, x_obs, later, n_frames=n_frames, config=TINY)
    np.testing.assert_array_equal(out[:, :k + 1], base[:, :k + 1])       # frames ≤ t unchanged
    assert float(jnp.abs(out[:, k + 1:] - base[:, k + 1:]).max()) > 0
    at = audio.at[:, 4 * (t + reach):4 * (t + reach + 1)].add(1.0)
    out = ROLL(params, x_obs, at, n_frames=n_frames, config=TINY)
    np.testing.assert_array_equal(out[:, :k], base[:, :k])
    assert float(jnp.abs(out[:, k] - base[:, k]).max()) > 0              # the bound is tight


def test_gradients_finite_through_a_40_frame_rollout(params):
    x_obs, audio = _inputs(2, 40, seed=9)
    target = jnp.zeros((2, 40, 10, 6))

    def loss(params):
        return jnp.mean((rollout(params, x_obs, audio, 40, config=TINY) - target) ** 2)

    grads = jit(jax.grad(loss))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert all(float(jnp.abs(g).max()) > 0 for g in leaves)              # every parameter used


@pytest.mark.parametrize("config", [TINY, TINY_RESTORE, TINY_ANCHOR],
                         ids=["paper", "restore", "anchor"])
def test_replayed_backward_equals_plain_autodiff(config):
    """The rollout's custom VJP (a replay of the recorded forward pass, attention over the
    recorded keys and values, weight gradients formed after the scan: motion.decode) gives
    the gradients plain AD gives through the re-encode reference — for every parameter, the
    observed frames and the audio — past the context, with branch scales."""
    params = tiny_params(config)
    n_frames = 42
    x_obs, audio = _inputs(2, n_frames, seed=10)
    target = jax.random.normal(jax.random.PRNGKey(11), (2, n_frames, 10, 6))

    def loss(fn):
        def value(params, x_obs, audio):
            out = fn(params, x_obs, audio, n_frames, config=config, head_scale=0.7,
                     lip_scale=1.3)
            return jnp.sum((out - target) ** 2 * jnp.linspace(0.5, 2.0, n_frames)[:, None, None])
        return jit(jax.grad(value, argnums=(0, 1, 2)))

    fast = loss(rollout)(params, x_obs, audio)
    slow = loss(rollout_reencode)(params, x_obs, audio)
    for (path, f), s in zip(jax.tree_util.tree_flatten_with_path(fast)[0],
                            jax.tree_util.tree_leaves(slow)):
        scale = float(jnp.abs(s).max())
        assert scale > 0, jax.tree_util.keystr(path)
        np.testing.assert_allclose(f, s, atol=1e-4 * scale, rtol=0,
                                   err_msg=jax.tree_util.keystr(path))


def test_the_leak_bounds_a_biased_rollout(params):
    """With restore_seconds τ, a constant velocity b gives x_t − x_anchor → 25·τ·b (a bounded
    offset); without it the same velocity walks off linearly."""
    bias = {"head": dict(params["head"], b_out=params["head"]["b_out"] + 0.01)}
    biased = dict(params, **bias)
    x_obs, audio = _inputs(1, 300, seed=12)
    x_obs = jnp.repeat(x_obs[:, :1], TINY.obs_len, axis=1)
    free = ROLL(biased, x_obs, audio, n_frames=300, config=TINY)
    held = ROLL(biased, x_obs, audio, n_frames=300, config=TINY_RESTORE)
    walk = jnp.abs(free[:, -1] - x_obs[:, 0]).max()
    offset = jnp.abs(held - x_obs[:, :1]).max(axis=(0, 2, 3))            # [300]
    assert float(walk) > 2.0
    assert float(offset.max()) < 0.5 * float(walk)
    assert float(offset[200:].max()) < 1.5 * float(offset[100:200].max())   # no growth


def test_generate_60_seconds_and_buckets(params):
    model = model_lib.GeneratorModel(params, TINY)
    x0 = 0.3 * np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    audio = np.random.default_rng(1).normal(size=(4 * 1500, 26)).astype(np.float32)
    long = gen.generate(model, x0, audio)                                # bucket 1536
    assert long.shape == (1500, 10, 6)
    np.testing.assert_array_equal(long[0], x0)
    assert np.all(np.isfinite(long))
    assert gen.generate(model, x0, audio[:4]).shape == (1, 10, 6)
    # frames that cannot see the (mirrored) end of the audio do not depend on the bucket
    n = 60                                                               # bucket 64
    short = gen.generate(model, x0, audio[:4 * n])
    keep = n - TINY.lookahead
    assert_close(short[:keep], long[:keep], rel=2e-6)
    assert gen.bucket(119) == 128 and gen.bucket(1499) == 1536


def test_ready_model_generates_the_same_frames(params):
    """A loaded model's prepared per-frame weights (``ready``) change nothing but speed."""
    model = model_lib.GeneratorModel(params, TINY)
    prepared = model_lib.ready(model)
    assert model.frame_weights is None and prepared.frame_weights is not None
    x0 = 0.3 * np.random.default_rng(5).normal(size=(2, 10, 6)).astype(np.float32)
    audio = np.random.default_rng(6).normal(size=(2, 4 * 30, 26)).astype(np.float32)
    # frames reach ~8, where one float32 ulp is 9.5e-7: a bare atol=1e-6 was one ulp (flaky)
    assert_close(gen.generate_batch(prepared, x0, audio, head_scale=1.5),
                 gen.generate_batch(model, x0, audio, head_scale=1.5), rel=2e-6)


def test_generate_scales_and_no_recompile(params):
    model = model_lib.GeneratorModel(params, TINY)
    x0 = np.zeros((10, 6), np.float32)
    audio = np.random.default_rng(4).normal(size=(4 * 50, 26)).astype(np.float32)
    base = gen.generate(model, x0, audio)
    compiled = gen._rollout_jit._cache_size()
    np.testing.assert_array_equal(gen.generate(model, x0, audio, 1.0, 1.0), base)
    calm = gen.generate(model, x0, audio, head_scale=0.0, lip_scale=0.0)
    gen.generate(model, x0, audio[:4 * 40], head_scale=2.0)             # same bucket (64)
    assert gen._rollout_jit._cache_size() == compiled                    # no recompilation
    assert np.abs(calm - base).max() > 0
