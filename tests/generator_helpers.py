"""Shared by the generator tests: parameters of a (tiny) config, initialised once per session."""
from __future__ import annotations

import functools

import jax

from motion.generator import GeneratorConfig, init_params

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
