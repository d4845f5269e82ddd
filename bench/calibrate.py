"""Measure this machine's bounds in the same process as a benchmark (docs/design.md,
"Performance yardsticks").

These machines are shared and noisy (the same command varies 2× from hour to hour), so every
benchmark reports its figures also as fractions of bounds measured in the same run:
- ``matmul_gflops``: fp32 matrix-multiply throughput (best of 25 jitted 2048² products: on these
  hosts single readings vary by ±25 % within seconds, and the best is the machine's capability);
- ``stream_gbps``: bytes per second of a matrix-vector product whose matrix (256 MiB) is far
  larger than the caches, i.e. the rate at which weights can be streamed once.
"""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp


def best_seconds(fn, *args, repeats: int = 7) -> float:
    """Best wall time of ``fn(*args)`` (blocking on the result) after one warm-up call."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(n: int = 2048, repeats: int = 25) -> float:
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    a = jax.random.normal(keys[0], (n, n), jnp.float32)
    b = jax.random.normal(keys[1], (n, n), jnp.float32)
    matmul = jax.jit(lambda x, y: jnp.dot(x, y, precision=jax.lax.Precision.HIGHEST))
    return 2 * n ** 3 / best_seconds(matmul, a, b, repeats=repeats) / 1e9


def stream_gbps(rows: int = 8192, cols: int = 8192, repeats: int = 7) -> float:
    weights = jnp.ones((rows, cols), jnp.float32)
    vector = jnp.ones((cols,), jnp.float32)
    matvec = jax.jit(lambda w, v: w @ v)
    return weights.size * 4 / best_seconds(matvec, weights, vector, repeats=repeats) / 1e9


def calibrate() -> dict:
    return {"matmul_gflops": round(matmul_gflops(), 1), "stream_gbps": round(stream_gbps(), 2),
            "device": str(jax.devices()[0].platform), "jax": jax.__version__}


if __name__ == "__main__":
    print(json.dumps(calibrate()))
