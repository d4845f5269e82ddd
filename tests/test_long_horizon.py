"""The long-horizon measures (``motion.long_horizon``) on hand-made sequences."""
from __future__ import annotations

import numpy as np
import pytest

from motion import long_horizon as lh
from syncers.data import landmark_space
from syncers.data.layout import LANDMARK_SPACE

FPS = 25


def _wobble(n_frames: int, seed: int = 0) -> np.ndarray:
    """A stationary 'real' sequence: the mean face's keypoints plus band-limited wobble."""
    rng = np.random.default_rng(seed)
    base = landmark_space.encode(landmark_space.mean_face())
    t = np.arange(n_frames) / FPS
    x = np.repeat(base[None], n_frames, axis=0).astype(np.float64)
    for k in range(10):
        for c in range(2):
            freq, phase = rng.uniform(0.2, 3.0), rng.uniform(0, 2 * np.pi)
            x[:, k, c] += 0.01 * np.sin(2 * np.pi * freq * t + phase)
    return x


def _audio(n_frames: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(4 * n_frames, 26))


def test_a_sequence_compared_with_itself():
    x = _wobble(FPS * 60)
    result = lh.compare(x, x, _audio(FPS * 60), LANDMARK_SPACE)
    assert result["finite"]
    for entry in result["displacement"].values():
        assert entry["generated"] == entry["gt"]
    for name in ("first", "last"):
        assert result[name]["velocity_ratio"] == pytest.approx(1.0, rel=1e-12)
        assert result[name]["acceleration_ratio"] == pytest.approx(1.0, rel=1e-12)
        assert result[name]["mouth_generated"] == result[name]["mouth_gt"]
    np.testing.assert_array_equal(lh.position_w1(x, x), np.zeros(10))
    assert set(result["displacement"]) == {"10s", "30s", "60s"}


def test_a_drifting_sequence_is_flagged():
    x = _wobble(FPS * 60)
    drifted = x.copy()
    drifted[..., :2] += np.linspace(0, 0.5, len(x))[:, None, None]      # walks off by 0.5
    result = lh.compare(drifted, x, _audio(FPS * 60), LANDMARK_SPACE)
    d = result["displacement"]["60s"]
    assert d["generated"] > 10 * d["gt"]
    assert result["last"]["w1_ratio_mean"] > 5 * max(result["first"]["w1_ratio_mean"], 0.1)
    jittery = x + np.random.default_rng(3).normal(0, 0.01, x.shape)
    assert lh.compare(jittery, x, _audio(FPS * 60), LANDMARK_SPACE)["last"][
        "velocity_ratio"] > 1.5


def test_the_reachable_reference_is_the_truth_recentred_at_its_first_frame():
    x = _wobble(FPS * 60)
    x[:FPS * 30, :, :2] += 0.02                   # the head rests elsewhere in the first half
    recentred = lh.start_recentred(x)
    scale = np.abs(x).max()
    np.testing.assert_allclose(recentred.mean(axis=0), x[0], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(np.diff(recentred, axis=0), np.diff(x, axis=0), rtol=0,
                               atol=1e-12 * scale)
    audio = _audio(FPS * 60)
    for name in ("first", "last"):
        assert lh.compare(recentred, x, audio, LANDMARK_SPACE)[name][
            "w1_ratio_to_start_recentred"] == pytest.approx(1.0, rel=1e-9)


def test_a_frozen_first_frame_is_farther_than_the_reachable_reference():
    # Stationary wobble of 0.01: the reference is about |x0 - mean| away; a frozen x0 also
    # lacks the spread, and the truth itself (which knows its mean) is far nearer.
    x = _wobble(FPS * 60)
    audio = _audio(FPS * 60)
    results = [lh.compare(np.broadcast_to(x[:1], x.shape), x, audio, LANDMARK_SPACE),
               lh.compare(x, x, audio, LANDMARK_SPACE)]
    frozen, itself = (r["last"] for r in results)
    assert frozen["w1_start_recentred_mean"] == itself["w1_start_recentred_mean"]
    assert frozen["w1_ratio_to_start_recentred"] > 1.1
    assert itself["w1_ratio_to_start_recentred"] < 0.1
    assert lh.aggregate(results)["last"]["w1_ratio_to_start_recentred"] == pytest.approx(
        (frozen["w1_ratio_to_start_recentred"] + itself["w1_ratio_to_start_recentred"]) / 2,
        rel=1e-9)


def test_nan_is_reported_not_measured():
    x = _wobble(FPS * 20)
    bad = x.copy()
    bad[100] = np.nan
    result = lh.compare(bad, x, _audio(FPS * 20), LANDMARK_SPACE)
    assert result == {"frames": FPS * 20, "finite": False}
    assert lh.aggregate([result])["finite"] is False


def test_aggregate_and_plot(tmp_path):
    x = _wobble(FPS * 60)
    runs = [lh.compare(x, x, _audio(FPS * 60), LANDMARK_SPACE),
            lh.compare(x + 0.01, x, _audio(FPS * 60, seed=2), LANDMARK_SPACE)]
    summary = lh.aggregate(runs)
    assert summary["sequences"] == 2 and summary["finite"]
    assert summary["last"]["velocity_ratio"] == pytest.approx(1.0, rel=1e-9)
    lh.plot(x + 0.01, x, LANDMARK_SPACE, tmp_path / "long.png")
    assert (tmp_path / "long.png").stat().st_size > 10_000
