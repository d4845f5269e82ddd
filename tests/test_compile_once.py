"""Each stage's jitted training step is traced and compiled once over several steps.

A retrace (a state whose sharding, dtype or pytree structure changes after the first step, a
Python scalar where an array was, a fresh jit per call) costs a full XLA compile per step —
seconds on a CPU, minutes for the paper-size step — and passes every numerical test.

How the count is taken, robustly across JAX 0.4.30 to 0.11: the step's function is wrapped
in a Python counter before the trainer's own factory (``_jit_train_step``, the lru-cached
builder behind ``jit_train_step``; called through ``__wrapped__`` so the shared cache is not
touched) jits it. JAX runs a jitted function's Python body only when it traces, so the counter
counts traces — plain Python, no dependence on JAX's logging text or monitoring event names,
which change between versions. Where the jitted object has ``_cache_size()`` (JAX's
C++ dispatch cache; present across that range, but private) it must also hold one entry: one
compiled executable serves every step.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from generator_helpers import FAST_COMPILE

from motion import discriminators, generator
from motion import train as motion_train
from motion.config import GeneratorRunConfig, OptimConfig
from motion.losses import LossConfig
from syncers import train as syncer_train
from syncers.models import Syncer
from syncers.run import config as config_lib
from syncers.run import parallel

STEPS = 3


def _counting(monkeypatch, module):
    """Replace ``module.train_step`` by a wrapper counting its (trace-time) calls."""
    calls = []
    original = module.train_step

    def train_step(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "train_step", train_step)
    return calls


def _assert_one_executable(step_fn):
    if hasattr(step_fn, "_cache_size"):
        assert step_fn._cache_size() == 1


def test_syncer_train_step_compiles_once(monkeypatch):
    config = config_lib.from_dict(syncer_train.SyncersConfig, {
        "model": {"embed_dim": 8, "frame_hidden": 8, "audio": {"width": 8, "depth": 0},
                  "motion": {"width": 8, "depth": 0}},
        "optim": {"learning_rate": 1e-3, "warmup_steps": 1, "schedule": "cosine"},
        "train": {"steps": 10}})
    motion_dim, audio_dim, batch_size, candidates = 12, 6, 4, 3
    calls = _counting(monkeypatch, syncer_train)
    mesh = parallel.data_mesh()
    model = Syncer(config.model, motion_dim, audio_dim)
    step_fn = syncer_train._jit_train_step.__wrapped__(
        model, config.objective, config.optim, config.train.steps, mesh)
    state = syncer_train.create_state(config, 1, motion_dim, audio_dim, mesh=mesh)
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        # a new batch each step, built as the trainer builds it (host arrays placed per step)
        batch = parallel.global_batch({
            "motion": rng.normal(size=(batch_size, 5, motion_dim)).astype(np.float32),
            "audio": rng.normal(size=(batch_size, candidates, 20, audio_dim)).astype(np.float32),
        }, mesh, batch_size)
        state, metrics = step_fn(state, batch)
        assert np.isfinite(float(metrics["loss"]))
    assert int(state.step) == STEPS
    assert len(calls) == 1, f"train_step traced {len(calls)} times in {STEPS} steps"
    _assert_one_executable(step_fn)


# ~20 s of CPU (the GAN step's compile, even at TINY sizes: the rollout's custom VJP and both
# discriminators), like test_train.py's one-step test.
@pytest.mark.slow
def test_generator_train_step_compiles_once(monkeypatch):
    run = GeneratorRunConfig(model=generator.TINY,
                             discriminators=dataclasses.replace(discriminators.TINY,
                                                                windows=(5,)),
                             loss=LossConfig(lambda_av=0.1, levels=1),
                             optim=OptimConfig(lr_g=1e-3, lr_d=1e-3, decay_step=2))
    n, obs, batch_size = 8, run.model.obs_len, 2
    mesh = parallel.data_mesh()
    options = tuple(sorted(FAST_COMPILE.items()))

    def score(frozen, level, audio, motion):    # a stand-in syncer, as in test_train.py
        a = audio.mean(1) @ frozen["a"]
        m = motion.mean(1) @ frozen["m"]
        return jnp.sum(a * m, -1) / (jnp.linalg.norm(a, axis=-1) *
                                     jnp.linalg.norm(m, axis=-1) + 1e-6)

    calls = _counting(monkeypatch, motion_train)
    step_fn = motion_train._jit_train_step.__wrapped__(run, score, options, mesh)
    # the state as motion.train.train makes it: created by the jitted initialiser, replicated
    state = parallel.replicate(motion_train._jit_create(options)(run, jax.random.PRNGKey(0), n),
                               mesh)
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    frozen = parallel.replicate({"a": jax.random.normal(keys[0], (26, 4)),
                                 "m": jax.random.normal(keys[1], (60, 4))}, mesh)
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        batch = parallel.global_batch({
            "keypoints": 0.2 * rng.normal(size=(batch_size, obs + n, 10, 6)).astype(np.float32),
            "audio_features": rng.normal(size=(batch_size, 4 * (obs + n), 26)).astype(np.float32),
        }, mesh, batch_size)
        state, metrics = step_fn(state, frozen, batch)
        assert np.isfinite(float(metrics["g_total"]))
    assert int(state.step) == STEPS
    assert len(calls) == 1, f"train_step traced {len(calls)} times in {STEPS} steps"
    _assert_one_executable(step_fn)
