"""One generator GAN step on the tiny config (motion.train)."""
from __future__ import annotations

import dataclasses
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from generator_helpers import FAST_COMPILE, jit
from tolerance import assert_close

from motion import discriminators, generator, losses
from motion import train as motion_train
from motion.config import GeneratorRunConfig, OptimConfig
from motion.losses import LossConfig
from motion.rollout import rollout
from motion.train import create_train_state, train_step
from syncers.models import EncoderConfig, ModelConfig, Syncer
from syncers.models import init_params as syncer_init


def _score(frozen, level, audio, motion):
    # a stand-in syncer: cosine of mean-pooled windows through a frozen projection
    a = audio.mean(1) @ frozen["a"]
    m = motion.mean(1) @ frozen["m"]
    return jnp.sum(a * m, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(m, axis=-1) + 1e-6)


@pytest.mark.slow
def test_one_step_lowers_reconstruction_and_is_finite():
    # two window sizes keep the compile small; the step is the same for four
    run = GeneratorRunConfig(model=generator.TINY,
                             discriminators=dataclasses.replace(discriminators.TINY,
                                                                windows=(5, 40)),
                             loss=LossConfig(lambda_av=0.1),
                             optim=OptimConfig(lr_g=1e-3, lr_d=1e-3, decay_step=1))
    n, obs = 40, run.model.obs_len
    state = jit(create_train_state, static_argnums=(0, 2))(run, jax.random.PRNGKey(0), n)
    t = jnp.arange(obs + n)[None, :, None, None] / 10.0
    keypoints = 0.2 * jnp.sin(t + jnp.arange(6)) * jnp.ones((2, 1, 10, 1))
    audio = jax.random.normal(jax.random.PRNGKey(1), (2, 4 * (obs + n), 26))
    batch = {"keypoints": keypoints, "audio_features": audio}
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    frozen = {"a": jax.random.normal(keys[0], (26, 8)), "m": jax.random.normal(keys[1], (60, 8))}

    @jit
    def l_rec(g):
        out = rollout(g, keypoints[:, :obs], audio, n, config=run.model)
        return jnp.mean((out - keypoints[:, obs:]) ** 2)

    before = float(l_rec(state.g_params))
    step = jit(functools.partial(train_step, config=run, score_fn=_score))
    new, metrics = step(state, frozen, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    np.testing.assert_allclose(metrics["l_rec"], before, rtol=1e-5)
    assert sorted(k for k in metrics if k.startswith("av_score")) == [
        f"av_score_{i}" for i in range(1, 5)]
    assert int(new.step) == 1
    # the learning rates follow the state's step: full before decay_step, ×0.1 from it on
    assert float(metrics["lr_g"]) == pytest.approx(1e-3)
    assert float(metrics["lr_d"]) == pytest.approx(1e-3)
    _, later = step(new, frozen, batch)
    assert float(later["lr_g"]) == pytest.approx(1e-4)
    assert float(l_rec(new.g_params)) < before


def test_step_compiler_options_change_the_fusion_not_the_syncer_loss():
    # what the options are for: the frozen syncers' L_AV and its gradient w.r.t. the generated
    # motion, at the width where XLA:CPU fuses differently with them (at tiny widths it does not)
    options = dict(motion_train.step_compiler_options("cpu"))
    if not options:
        pytest.skip("this XLA does not accept the step's CPU options")
    model = Syncer(ModelConfig(audio=EncoderConfig(width=256, depth=1, kernel=7),
                               motion=EncoderConfig(width=64, depth=1, kernel=3)), 60, 26)
    frozen = {level: syncer_init(model, level) for level in (1, 2)}
    score = motion_train.syncer_score_fn(model, "cos")
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    motion = 0.1 * jax.random.normal(keys[0], (2, 20, 10, 6))
    audio = jax.random.normal(keys[1], (2, 80, 26))

    def l_av(motion):
        return losses.av_multiscale(functools.partial(score, frozen), motion, audio,
                                    LossConfig(levels=2))[0]
    plain, tuned = (jax.jit(jax.value_and_grad(l_av), compiler_options=FAST_COMPILE | extra)
                    .lower(motion).compile() for extra in ({}, options))
    assert plain.as_text() != tuned.as_text()
    for a, b in zip(tuned(motion), plain(motion)):
        # the gradients are ~1e-2: atol=1e-6 let elements be 1e-4 of the scale off
        assert_close(a, b, rel=1e-5)


def test_step_compiler_options_apply_on_cpu_only_and_yield_to_the_callers(monkeypatch):
    cpu = motion_train.step_compiler_options("cpu")
    assert cpu in ((), motion_train._CPU_STEP_OPTIONS)    # () where this XLA lacks the option
    assert motion_train.step_compiler_options("gpu") == ()
    seen = []
    monkeypatch.setattr(motion_train, "_jit_train_step",
                        lambda run, score_fn, options, mesh: seen.append(options))
    mesh = types.SimpleNamespace(devices=np.array(jax.devices("cpu")[:1], dtype=object))
    mine = (("xla_backend_optimization_level", 0),
            ("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_DOT"))
    motion_train.jit_train_step(None, _score, (), mesh)
    motion_train.jit_train_step(None, _score, mine, mesh)
    assert seen[0] == cpu
    assert seen[1] == mine                                 # the caller's value wins


@pytest.mark.slow
def test_burn_in_scores_frames_that_start_from_the_generators_own_state():
    """With train.burn_in_frames b, G first rolls out b frames from the observed ones with no
    gradient, and L_rec scores the next n frames, rolled out from that history, against the
    ground truth's frames O+b..O+b+n."""
    from motion.config import TrainConfig
    burn, n = 6, 40
    run = GeneratorRunConfig(model=generator.TINY,
                             discriminators=dataclasses.replace(discriminators.TINY,
                                                                windows=(5, 10)),
                             loss=LossConfig(lambda_av=0.1, lambda_vel=1.0, levels=2),
                             optim=OptimConfig(lr_g=1e-3, lr_d=1e-3),
                             train=TrainConfig(seq_frames=n, burn_in_frames=burn))
    obs = run.model.obs_len
    total = obs + burn + n
    state = jit(create_train_state, static_argnums=(0, 2))(run, jax.random.PRNGKey(0), n)
    t = jnp.arange(total)[None, :, None, None] / 10.0
    keypoints = 0.2 * jnp.sin(t + jnp.arange(6)) * jnp.ones((2, 1, 10, 1))
    audio = jax.random.normal(jax.random.PRNGKey(1), (2, 4 * total, 26))
    frozen = {"a": jnp.ones((26, 8)), "m": jnp.ones((60, 8))}

    @jit
    def scored(g):
        own = rollout(g, keypoints[:, :obs], audio, burn, config=run.model)
        history = jnp.concatenate([keypoints[:, :obs], own], axis=1)
        out = rollout(g, history, audio, n, config=run.model)
        rec = jnp.mean((out - keypoints[:, obs + burn:]) ** 2)
        return rec, losses.velocity(keypoints[:, obs + burn - 1], keypoints[:, obs + burn:],
                                    out, history[:, -1])

    rec, vel = scored(state.g_params)
    step = jit(functools.partial(train_step, config=run, score_fn=_score))
    _, metrics = step(state, frozen, {"keypoints": keypoints, "audio_features": audio})
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
    np.testing.assert_allclose(metrics["l_rec"], rec, rtol=1e-5)
    np.testing.assert_allclose(metrics["l_vel"], vel, rtol=1e-5)
