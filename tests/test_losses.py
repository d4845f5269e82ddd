"""Hinge losses, L_rec and L_AV^MS against hand computations (eq. 6–7, 11–14, 16)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tolerance import assert_close

from motion import losses
from syncers.data.landmark_space import RIGID


def test_hinge_losses_by_hand():
    real = jnp.array([2.0, 0.5, -1.0])
    fake = jnp.array([-2.0, 0.0, 0.5])
    # real: max(0, 1−r) = 0, 0.5, 2 → 2.5/3; fake: max(0, 1+f) = 0, 1, 1.5 → 2.5/3
    np.testing.assert_allclose(losses.d_hinge(real, fake), 5.0 / 3, rtol=1e-6)
    np.testing.assert_allclose(losses.g_hinge(fake), 1.5 / 3, rtol=1e-6)
    np.testing.assert_allclose(losses.reconstruction(jnp.ones((1, 2, 10, 6)),
                                                     jnp.zeros((1, 2, 10, 6))), 1.0)


def _toy_score(level, audio_Nx20xF, motion_Nx5x60):
    # depends on level, both windows and their alignment: easy to recompute by hand
    return level * jnp.tanh(audio_Nx20xF.mean((1, 2)) * motion_Nx5x60.mean((1, 2)))


def _np_pyramid(x, levels=4, k=3):
    """Eq. 5 in NumPy: box of 2k+1 taps, reflect padding, keep every other frame."""
    out = [x]
    for _ in range(levels - 1):
        p = np.pad(out[-1], [(k, k)] + [(0, 0)] * (x.ndim - 1), mode="reflect")
        smooth = sum(p[j:j + out[-1].shape[0]] for j in range(2 * k + 1)) / (2 * k + 1)
        out.append(smooth[::2])
    return out


def test_av_multiscale_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    motion = rng.normal(size=(2, 40, 10, 6)).astype(np.float32)
    audio = rng.normal(size=(2, 160, 26)).astype(np.float32)
    config = losses.LossConfig()
    av = jax.jit(losses.av_multiscale, static_argnums=(0, 3))
    total, per_level = av(_toy_score, jnp.asarray(motion), jnp.asarray(audio), config)
    expected = {}
    for level in range(1, 5):
        scores = []
        for b in range(2):
            x = _np_pyramid(motion[b].reshape(40, 60).astype(np.float64))[level - 1]
            a = _np_pyramid(audio[b].astype(np.float64))[level - 1]
            for c in range(2, x.shape[0] - 2):                           # whole segments only
                seg_x = x[c - 2:c + 3]
                centre = 4 * c + (2 if level == 1 else 1)                # pyramid.audio_centers
                seg_a = a[np.clip(np.arange(centre - 10, centre + 10), 0, len(a) - 1)]
                scores.append(level * np.tanh(seg_a.mean() * seg_x.mean()))
        expected[level] = np.mean(scores)
    for level in range(1, 5):
        # the scores are ~1e-3: atol=1e-6 let them be 0.1 % off; scale it to them
        assert_close(per_level[level], expected[level], rel=1e-5)
    np.testing.assert_allclose(total, -sum(expected.values()), rtol=1e-5)
    single, levels = av(_toy_score, jnp.asarray(motion), jnp.asarray(audio),
                        losses.LossConfig(multiscale_av=False))
    assert list(levels) == [1]
    np.testing.assert_allclose(single, -expected[1], rtol=1e-5)
    with pytest.raises(ValueError, match="level 4"):
        jax.eval_shape(lambda m, a: losses.av_multiscale(_toy_score, m, a, config),
                       jnp.asarray(motion[:, :20]), jnp.asarray(audio[:, :80]))


def test_total_loss_eq16_with_switches():
    config = losses.LossConfig()
    np.testing.assert_allclose(losses.generator_total(config, 1.0, 2.0, 3.0, 4.0),
                               8 * 1 + 0.1 * (2 + 3) + 4)
    off = losses.LossConfig(frame_discriminator=False, lambda_rec=0.0)
    np.testing.assert_allclose(losses.generator_total(off, 1.0, 2.0, 3.0, 4.0), 8 + 0.1 * 3)


def test_velocity_loss_charges_jitter_that_reconstruction_barely_sees():
    rng = np.random.default_rng(0)
    x_obs_last = jnp.asarray(rng.normal(size=(2, 10, 6)), jnp.float32)
    true = x_obs_last[:, None] + jnp.cumsum(0.01 * jnp.ones((2, 40, 10, 6)), axis=1)
    assert float(losses.velocity(x_obs_last, true, true)) == 0.0
    sign = jnp.asarray(np.where(np.arange(40) % 2, 1.0, -1.0), jnp.float32)[None, :, None, None]
    jitter = true + 0.01 * sign                         # ±0.01 every other frame
    # velocity error 0.02 at every frame but the first (0.01 from the observed frame)
    expected = (0.01 ** 2 + 39 * 0.02 ** 2) / 40
    np.testing.assert_allclose(float(losses.velocity(x_obs_last, true, jitter)), expected,
                               rtol=1e-4)
    assert float(losses.reconstruction(true, jitter)) == pytest.approx(1e-4, rel=1e-4)
    config = losses.LossConfig(lambda_vel=2.0)
    assert float(losses.generator_total(config, 0.0, 0.0, 0.0, 0.0, 0.5)) == 1.0


def test_head_weight_scales_only_the_heads_shared_error():
    rng = np.random.default_rng(1)
    true = jnp.asarray(rng.normal(size=(2, 8, 10, 6)), jnp.float32)
    face = jnp.asarray(rng.normal(size=(2, 8, 10, 6)), jnp.float32) * 0.1
    # the face's own error, made to have no head part (the rigid keypoints' mean position 0)
    rigid = list(RIGID)
    face = face.at[..., rigid, :2].add(-face[..., rigid, :2].mean(axis=-2, keepdims=True))
    head = jnp.zeros((2, 8, 10, 6)).at[..., :2].set(
        jnp.asarray(rng.normal(size=(2, 8, 1, 2)), jnp.float32))
    face_only = float(losses.reconstruction(true, true + face))
    for weight in (1.0, 0.3, 0.0):
        # the face's own error is charged in full whatever the weight
        assert_close(float(losses.reconstruction(true, true + face, weight)), face_only,
                     rel=1e-5)
        # a head move alone (every position shifted alike) is charged by the weight
        moved = float(losses.reconstruction(true, true + head))
        assert_close(float(losses.reconstruction(true, true + head, weight)), weight * moved,
                     rel=1e-5, scale=moved)
    # 1 is eq. 14 exactly; the velocity loss takes the same weight
    mixed = true + face + head
    assert float(losses.reconstruction(true, mixed, 1.0)) == float(
        jnp.mean((true - mixed) ** 2))
    step = jnp.concatenate([true[:, :1], true[:, :1] + head[:, 1:2]], axis=1)
    still = jnp.concatenate([true[:, :1], true[:, :1]], axis=1)
    assert_close(float(losses.velocity(true[:, 0], still, step, head_weight=0.25)),
                 0.25 * float(losses.velocity(true[:, 0], still, step)), rel=1e-5)
