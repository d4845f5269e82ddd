"""Shared by the generator tests: parameters of a (tiny) config, initialised once per session,
and the slow re-encoding reference of the rollout."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from motion.generator import Generator, GeneratorConfig, branch_scales, init_params

# XLA's CPU backend spends most of a tiny model's compile time optimising hundreds of small
# kernels with LLVM; the tests run each once, so compile them unoptimised (≈3× faster).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jit(fn, **kwargs):
    """``jax.jit`` for tests: unoptimised compilation."""
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


_INIT = jit(init_params, static_argnums=0)


@functools.lru_cache(maxsize=None)
def tiny_params(config: GeneratorConfig, seed: int = 0):
    return _INIT(config, jax.random.PRNGKey(seed))


def rollout_reencode(params, x_obs, audio_features, n_frames: int, *, config: GeneratorConfig,
                     head_scale=1.0, lip_scale=1.0) -> jax.Array:
    """The frames of ``motion.rollout.rollout``, computed by re-encoding the whole history at
    every step with the sequence modules of ``motion.generator`` (O(t) per frame)."""
    batch, n_obs = x_obs.shape[:2]
    model = Generator(config)
    apply = functools.partial(model.apply, {"params": params})
    scales = branch_scales(config.levels, head_scale, lip_scale)
    a_proj = apply(audio_features, method=Generator.audio_projections)
    total = n_obs + n_frames
    history = jnp.zeros((batch, total) + x_obs.shape[2:], x_obs.dtype)
    history = history.at[:, :n_obs].set(x_obs)

    def step(k, history):
        t = n_obs - 1 + k
        e = apply(history, x_obs[:, :1], method=Generator.encode)        # [B, total, D]
        h = apply(e, method=Generator.temporal_full)                     # causal: later
        e_t = jax.lax.dynamic_index_in_dim(e, t, 1, keepdims=False)      # frames unused
        h_t = jax.lax.dynamic_index_in_dim(h, t, 1, keepdims=False)
        a_t = jax.lax.dynamic_index_in_dim(a_proj, t + 1, 1, keepdims=False)
        v, _ = apply(h_t, e_t, a_t, scales, method=Generator.velocity)
        x_t = jax.lax.dynamic_index_in_dim(history, t, 1, keepdims=False)
        x_next = x_t + v - config.restore_rate * (x_t - x_obs[:, 0])
        return jax.lax.dynamic_update_index_in_dim(history, x_next, t + 1, 1)

    history = jax.lax.fori_loop(0, n_frames, step, history)
    return history[:, n_obs:]
