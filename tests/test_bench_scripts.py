"""The bench scripts (bench/): each still imports against the code it measures, so a renamed
name fails here, not when someone needs its figure."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
OPTIONAL = ("torch", "face_alignment", "gradio", "playwright")   # the torch and ui extras


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*.py")
                                          if p.stem != "__init__"))
def test_every_bench_script_imports(script):
    try:
        module = importlib.import_module(f"bench.{script}")
    except ModuleNotFoundError as err:
        if err.name in OPTIONAL:
            pytest.skip(f"bench/{script}.py needs {err.name} (an optional extra)")
        raise
    assert module.__doc__, f"bench/{script}.py says nowhere what it measures"


def test_head_motion_measures_spread_and_speed():
    """bench/head_motion.py: the rigid keypoints' mean position; its spread (std over frames,
    x and y averaged) and its speed (mean distance per second)."""
    import numpy as np

    from bench.head_motion import head_track, spread_and_speed

    keypoints = np.zeros((4, 10, 6))
    keypoints[:, :5, 0] = np.array([0.0, 0.1, 0.0, 0.1])[:, None]    # the head: x to and fro
    keypoints[:, 5:, 1] = np.arange(4)[:, None]                      # the mouth: ignored
    track = head_track(keypoints)
    np.testing.assert_allclose(track, [[0, 0], [0.1, 0], [0, 0], [0.1, 0]])
    spread, speed = spread_and_speed(track)
    assert spread == pytest.approx(0.05 / 2) and speed == pytest.approx(0.1 * 25)
