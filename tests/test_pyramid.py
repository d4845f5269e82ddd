"""Temporal pyramid (paper eq. 5) and segment windows: properties and a NumPy reference."""
import math

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tolerance import assert_close

from syncers.data.pyramid import audio_centers, downsample, filter_taps, segments, temporal_pyramid

# Every new shape compiles anew, so few examples, drawn from few lengths.
SETTINGS = settings(max_examples=8, deadline=None)


def numpy_reference(x, kind="box", k=3):
    """Loop-by-loop restatement of one pyramid step: filter with reflect padding, stride 2."""
    taps = filter_taps(kind, k).astype(np.float64)
    n = x.shape[0]
    out = []
    for t in range(0, n, 2):
        acc = np.zeros(x.shape[1:])
        for j in range(-k, k + 1):
            i = t + j
            if i < 0:
                i = -i
            if i >= n:
                i = 2 * (n - 1) - i
            acc = acc + taps[j + k] * x[i]
        out.append(acc)
    return np.stack(out)


lengths = st.sampled_from([8, 9, 31, 64])
trailing = st.sampled_from([(), (3,), (10, 6), (2, 2, 2)])


@SETTINGS
@given(data=st.data(), n=lengths, tail=trailing, kind=st.sampled_from(["box", "gaussian"]))
def test_matches_numpy_reference(data, n, tail, kind):
    x = data.draw(hnp.arrays(np.float32, (n,) + tail,
                             elements=st.floats(-10, 10, width=32)))
    got = np.asarray(downsample(x, kind=kind))
    np.testing.assert_allclose(got, numpy_reference(x.astype(np.float64), kind), atol=1e-4)


@SETTINGS
@given(n=st.sampled_from([30, 57, 200]), value=st.floats(-5, 5),
       kind=st.sampled_from(["box", "gaussian"]))
def test_constant_stays_constant_and_lengths_halve(n, value, kind):
    x = np.full((n, 10, 6), value, np.float32)
    levels = temporal_pyramid(x, levels=4, kind=kind)
    assert [lvl.shape[0] for lvl in levels] == [
        n, math.ceil(n / 2), math.ceil(math.ceil(n / 2) / 2),
        math.ceil(math.ceil(math.ceil(n / 2) / 2) / 2)]
    for lvl in levels:
        np.testing.assert_allclose(np.asarray(lvl), value, atol=1e-5)


@SETTINGS
@given(n=st.sampled_from([40, 81]), slope=st.floats(-2, 2),
       offset=st.floats(-3, 3))
def test_linear_ramp_stays_linear_away_from_borders(n, slope, offset):
    t = np.arange(n, dtype=np.float64)
    x = (offset + slope * t).astype(np.float32)[:, None]
    level2 = np.asarray(downsample(x))[:, 0]
    # Output frame m is centred on input frame 2m; a symmetric filter leaves a ramp unchanged
    # wherever the window does not touch the reflected border.
    for m in range(len(level2)):
        if 3 <= 2 * m <= n - 4:
            assert level2[m] == pytest.approx(offset + slope * 2 * m,
                                              abs=1e-3 * (1 + abs(slope) * n))


def test_box_taps_are_the_paper_filter():
    np.testing.assert_allclose(filter_taps("box", 3), np.full(7, 1 / 7))
    gauss = filter_taps("gaussian", 3)
    assert gauss.sum() == pytest.approx(1.0) and np.argmax(gauss) == 3
    np.testing.assert_allclose(gauss, gauss[::-1])


def test_jit_and_numpy_agree():
    x = np.random.default_rng(0).normal(size=(64, 10, 6)).astype(np.float32)
    eager = temporal_pyramid(x)
    jitted = jax.jit(temporal_pyramid, static_argnames=("levels", "kind", "k"))(x)
    for a, b in zip(eager, jitted):
        assert_close(a, b, rel=1e-6)       # values to ~4: atol=1e-6 was 2 ulps there


def test_too_short_raises():
    with pytest.raises(ValueError, match="more than k=3 frames"):
        downsample(np.zeros((3, 2), np.float32))


def test_segments_are_centred_windows():
    x = np.arange(50)[:, None] * np.ones((1, 4))
    windows = np.asarray(segments(x, centers=[10, 20], width=5))
    assert windows.shape == (2, 5, 4)
    np.testing.assert_array_equal(windows[:, :, 0], [[8, 9, 10, 11, 12], [18, 19, 20, 21, 22]])
    edge = np.asarray(segments(x, centers=[0], width=5))[0, :, 0]
    np.testing.assert_array_equal(edge, [0, 0, 0, 1, 2])
    mirrored = np.asarray(segments(x, centers=[0], width=5, mode="reflect"))[0, :, 0]
    np.testing.assert_array_equal(mirrored, [2, 1, 0, 1, 2])


@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_audio_windows_cover_the_motion_windows_time(level):
    """At every level, a 20-feature window spans the time of the matching 5-frame window."""
    stride = 2 ** (level - 1)
    n = np.arange(5, 12)
    motion_mid = n * stride + 0.5                      # video-frame units, window midpoint
    m = np.asarray(audio_centers(n, level))
    audio_mid = ((m - 0.5) * stride + 0.5) / 4         # window m-10..m+9 has midpoint m-0.5
    # Rounding the centre costs at most half a level-i feature frame (stride/4 video frames).
    assert np.max(np.abs(audio_mid - motion_mid)) <= 0.5 * stride / 4 + 1e-9
    if level == 1:
        np.testing.assert_allclose(audio_mid, motion_mid)
