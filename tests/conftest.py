"""Shared pytest fixtures.

Real media lives outside the repository, in ``../shared/data/real`` beside the clone; tests that
use it skip when it is absent (a user's clone has no ../shared).

Matmuls run at full f32 precision in every test, in this process and in the processes tests
start: the tests compare two computations of one function to 1e-5 (a KV-cache rollout and a
re-encode, a replayed backward and plain autodiff, cosine scores), and on GPUs XLA's default
f32 matmul is TF32 (a 10-bit mantissa), which moves such pairs ~1e-3 apart (4 tests failed on
an H200, 2026-11-28, and passed with full precision). CPUs compute f32 products in f32 anyway.

The persistent compilation cache (syncers.run.compile_cache) is off in every test and in the
processes tests start, so no test passes or fails by what an earlier run left in a cache; the
cache's own tests, and tests/test_hostile_input.py's killed generate (whose five runs share
one), turn it on in a temporary folder of the test's.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax
import pytest

os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")      # processes tests start
os.environ["MSYNC_NO_COMPILE_CACHE"] = "1"
jax.config.update("jax_default_matmul_precision", os.environ["JAX_DEFAULT_MATMUL_PRECISION"])

REPO = Path(__file__).resolve().parents[1]
REAL_MEDIA = REPO.parent / "shared" / "data" / "real"
REAL_CORPUS = REPO.parent / "shared" / "data" / "real-corpus"


@pytest.fixture(scope="session")
def real_media() -> Path:
    """The folder of real media; skips the test when it is not there."""
    if not REAL_MEDIA.is_dir():
        pytest.skip(f"real media not found at {REAL_MEDIA}")
    return REAL_MEDIA


@pytest.fixture(scope="session")
def real_corpus() -> Path:
    """The real talking-head corpus (``videos/``, ``MANIFEST.tsv``); skips when absent."""
    if not (REAL_CORPUS / "videos").is_dir():
        pytest.skip(f"real corpus not found at {REAL_CORPUS}")
    return REAL_CORPUS
