"""The generator's parts: sizes, shapes, causality of the temporal module, FPN look-ahead, eq.
10."""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from generator_helpers import jit, tiny_params
from tolerance import assert_close

from motion.fpn import AudioFPN, level_delays, lookahead_frames
from motion.generate import generate
from motion.generator import (
    PAPER,
    PRESETS,
    TINY,
    Generator,
    branch_scales,
    count_params,
    init_params,
)
from motion.model import GeneratorModel

CONFIG = TINY


@pytest.fixture(scope="module")
def params():
    return tiny_params(CONFIG)


def _apply_raw(params, *args, method):
    return Generator(CONFIG).apply({"params": params}, *args, method=method)


_apply = functools.partial(jit, static_argnames="method")(_apply_raw)


def test_paper_size_is_within_25_percent_of_the_paper_code():
    shapes = jax.eval_shape(functools.partial(init_params, PAPER), jax.random.PRNGKey(0))
    n = count_params(shapes)
    assert abs(n - 41.7e6) / 41.7e6 <= 0.25, n


def test_presets_are_ordered_by_size():
    sizes = {name: count_params(jax.eval_shape(functools.partial(init_params, c),
                                               jax.random.PRNGKey(0)))
             for name, c in PRESETS.items()}
    assert sizes["tiny"] < sizes["small"] < sizes["paper"]


def test_shapes(params):
    x = jnp.zeros((2, 12, 10, 6))
    audio = jnp.zeros((2, 48, 26))
    v = _apply(params, x, audio, method=Generator.__call__)
    assert v.shape == (2, 11, 10, 6)
    a = _apply(params, audio, method=Generator.audio_projections)
    assert a.shape == (2, 12, CONFIG.levels, CONFIG.branch_hidden)
    e = _apply(params, x, method=Generator.encode)
    assert e.shape == (2, 12, CONFIG.d_model)
    assert _apply(params, e, method=Generator.temporal_full).shape == (2, 12, CONFIG.d_model)


def test_temporal_module_is_causal_with_a_sliding_context(params):
    n = 100
    e = jax.random.normal(jax.random.PRNGKey(1), (1, n, CONFIG.d_model))
    t = 90

    weights = jax.random.normal(jax.random.PRNGKey(2), (CONFIG.d_model,))

    def h_t(e):   # a random projection: the sum of a LayerNorm output is constant
        return _apply_raw(params, e, method=Generator.temporal_full)[0, t] @ weights

    grad = np.abs(np.asarray(jit(jax.grad(h_t))(e)[0])).sum(-1)             # [n]
    assert np.all(grad[t + 1:] == 0.0)                                  # exactly: causal
    assert np.all(grad[t - CONFIG.context + 1:t + 1] > 0)               # reads its context
    # receptive field through the stack of sliding windows: L·(C−1) frames back, no further
    reach = CONFIG.n_layers * (CONFIG.context - 1)
    assert np.all(grad[:t - reach] == 0.0)


@pytest.mark.parametrize("bound, reaches", [(None, (1, 5, 13, 29)), (5, (1, 5, 5, 5)),
                                            (0, (0, 0, 0, 0))])
def test_fpn_lookahead_is_documented_and_tight(bound, reaches):
    """The centred FPN and its low-latency variants (``lookahead`` = 5 and 0 frames)."""
    assert lookahead_frames(4, 1, bound) == reaches
    assert PAPER.lookahead == 29
    assert dataclasses.replace(PAPER, fpn_lookahead=bound).lookahead == max(reaches)
    fpn = AudioFPN(channels=4, levels=4, post_convs=1, lookahead=bound)
    audio = jax.random.normal(jax.random.PRNGKey(2), (1, 4 * 80, 5))
    variables = jit(fpn.init)(jax.random.PRNGKey(3), audio)

    @jit
    def level_at(audio, t):
        return fpn.apply(variables, audio)[0, t]                        # [levels, C]

    # Never past the reach; at it for some frame t: frames t − delay of all phases modulo the
    # coarsest stride (8), one of which reads its next (future) coarse frame furthest ahead.
    for level, reach in enumerate(reaches):
        read_last = False
        for t in range(33, 41):
            base = level_at(audio, t)[level]
            after = audio.at[:, 4 * (t + reach + 1):].add(1.0)          # beyond the reach
            np.testing.assert_array_equal(level_at(after, t)[level], base)
            at = audio.at[:, 4 * (t + reach):4 * (t + reach + 1)].add(1.0)  # the last frame
            read_last |= bool(np.abs(level_at(at, t)[level] - base).max() > 0)
        assert read_last, level


def test_low_latency_fpn_is_the_centred_one_delayed():
    """Same parameters; each level's frame t is the centred level's frame t − delay (0, 0, 8,
    24 frames for a look-ahead of 5), zero before the level's first (coarse) frame."""
    centred = AudioFPN(channels=4, levels=4, post_convs=1)
    low = AudioFPN(channels=4, levels=4, post_convs=1, lookahead=5)
    audio = jax.random.normal(jax.random.PRNGKey(5), (1, 4 * 64, 5))
    variables = jit(centred.init)(jax.random.PRNGKey(6), audio)
    assert jax.tree.map(np.shape, jit(low.init)(jax.random.PRNGKey(6), audio)) == \
        jax.tree.map(np.shape, variables)
    a = np.asarray(jit(centred.apply)(variables, audio))[0]             # [T, levels, C]
    b = np.asarray(jit(low.apply)(variables, audio))[0]
    for level, delay in enumerate(level_delays(4, 1, 5)):
        assert delay == (0, 0, 8, 24)[level]
        assert_close(b[delay:, level], a[:len(a) - delay, level], rel=1e-6)
    # before the delay, level 4 is zero up to one coarse stride (8 frames) before its first
    # frame, then interpolates from zero towards it
    np.testing.assert_array_equal(b[:17, 3], 0.0)
    assert_close(b[17:24, 3], np.arange(1, 8)[:, None] / 8 * a[0, 3], rel=1e-6)


def test_low_latency_generator_frame_ignores_audio_past_its_bound():
    """Perturbing the audio after frame t + ``fpn_lookahead`` leaves generated frames ≤ t as
    they were; the audio at frame t + ``fpn_lookahead`` changes frame t."""
    config = dataclasses.replace(TINY, fpn_lookahead=5)
    model = GeneratorModel(tiny_params(config), config)
    x0 = np.asarray(jax.random.normal(jax.random.PRNGKey(7), (10, 6))) * 0.1
    audio = np.asarray(jax.random.normal(jax.random.PRNGKey(8), (4 * 60, config.audio_features)))
    base = generate(model, x0, audio)
    # odd t: level 2's next coarse frame reads audio frame t + 5; t = 3 is within the coarse
    # levels' delays (they are zero there rather than reading the clip's first coarse frame)
    for t in (3, 33):
        after = audio.copy()
        after[4 * (t + 6):] += 1.0
        np.testing.assert_array_equal(generate(model, x0, after)[:t + 1], base[:t + 1])
        at = audio.copy()
        at[4 * (t + 5):4 * (t + 6)] += 1.0
        changed = generate(model, x0, at)
        np.testing.assert_array_equal(changed[:t], base[:t])
        assert np.abs(changed[t] - base[t]).max() > 0


def test_eq10_masks_sum_to_one_and_scales(params):
    keys = jax.random.split(jax.random.PRNGKey(4), 3)
    h = jax.random.normal(keys[0], (3, CONFIG.d_model))
    e = jax.random.normal(keys[1], (3, CONFIG.d_model))
    a = jax.random.normal(keys[2], (3, CONFIG.levels, CONFIG.branch_hidden))
    ones = jnp.ones((CONFIG.levels,))
    v, masks = _apply(params, h, e, a, ones, method=Generator.velocity)
    assert v.shape == (3, 10, 6) and masks.shape == (3, CONFIG.levels, 10)
    np.testing.assert_allclose(masks.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(branch_scales(4), ones)
    np.testing.assert_array_equal(branch_scales(4, head_scale=0.5, lip_scale=2.0),
                                  [2.0, 1.0, 0.5, 0.5])
    v1, _ = _apply(params, h, e, a, branch_scales(4, 1.0, 1.0), method=Generator.velocity)
    np.testing.assert_array_equal(v1, v)

    def velocity_through(params, scales):
        return _apply_raw(params, h, e, a, scales, method=Generator.velocity)[0].sum()

    grad_fn = jit(jax.grad(velocity_through))

    # scale 0 removes a branch: its v^i outputs (first 60 of 70 columns) no longer matter
    for scales, removed in ((branch_scales(4, lip_scale=0.0), [0]),
                            (branch_scales(4, head_scale=0.0), [2, 3])):
        w_out = grad_fn(params, scales)["head"]["w_out"]
        for i in range(CONFIG.levels):
            g = np.abs(np.asarray(w_out[i, :, :60])).max()
            assert (g == 0.0) == (i in removed), (scales, i, g)


def test_yaml_configs_match_the_presets():
    from pathlib import Path

    from motion import discriminators
    from motion.config import GeneratorRunConfig
    from syncers.run.config import load

    root = Path(__file__).resolve().parents[1] / "configs"
    paper = load(GeneratorRunConfig, root / "generator.yaml")
    assert paper.model == PAPER and paper.loss.lambda_av == 8.0
    assert paper.discriminators == discriminators.DiscriminatorConfig()
    small = load(GeneratorRunConfig, root / "generator-small.yaml", ["loss.multiscale_av=false"])
    # the small run adds the leak to the anchor pose (docs/design.md, "Long generation")
    assert small.model == dataclasses.replace(PRESETS["small"], restore_seconds=1.0)
    assert not small.loss.multiscale_av and small.loss.lambda_vel == 2000.0
    assert small.discriminators == discriminators.SMALL
