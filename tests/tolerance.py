"""Float comparisons with a tolerance scaled to the magnitude of what is compared.

Two computations of one float32 function in a different order (a KV cache and a re-encode,
eager and jitted, one batch and chunks) differ by a few ulps of the *largest* values involved,
not by a fixed amount: a bare ``atol=1e-6`` is under one ulp for values above 8 (one such
comparison failed on values near 3.9 and 7.8), and an ``rtol``-only check fails on elements
that are ~0 after cancellation. ``assert_close`` allows ``rel`` times the scale (default: the
largest ``|desired|``), elementwise and as an absolute floor. ``rel = 2e-6`` is ~17 float32 ulps
of the largest value — far below what a real bug (a wrong cache slot, a dropped term, wrong
weights) moves the values, typically 1e-3 of the scale or more.
"""
from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)        # 1.19e-7: one ulp at 1.0


def assert_close(actual, desired, rel: float, scale: float | None = None, err_msg: str = ""):
    """``|actual - desired| <= rel * (|desired| + scale)`` elementwise; ``scale`` defaults to
    ``max |desired|`` (pass the inputs' magnitude where the expected values are ~0)."""
    desired = np.asarray(desired)
    if scale is None:
        scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(actual, desired, rtol=rel, atol=rel * scale, err_msg=err_msg)
