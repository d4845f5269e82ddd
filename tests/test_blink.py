"""The blink process (motion/blink.py): the generator's rate and durations as the detector
measures them, its determinism in the key, the keypoints' eyes closing, and the detector on a
known eye track."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from motion import blink
from motion.stream import BlinkStream
from syncers.data import landmark_space

FPS = 25.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_blinks_have_a_human_rate_and_duration(seed):
    """A minute of generated blinks: 8–30 per minute, each 100–400 ms half-closed."""
    closure = blink.generate(jax.random.PRNGKey(seed), int(60 * FPS), FPS)
    assert closure.shape == (1500,) and closure.min() >= 0.0 and closure.max() <= 1.0
    assert closure[0] == 0.0                                 # the first frame is the photo
    found = blink.detect(1.0 - 0.7 * closure, FPS)
    assert 8 <= len(found.onsets) <= 30, len(found.onsets)
    assert np.all(found.durations_s >= 0.1 - 1e-9) and np.all(found.durations_s <= 0.4 + 1e-9)


def test_long_run_rate_matches_the_configuration():
    config = blink.BlinkConfig(rate_per_min=20.0)
    closure = blink.generate(jax.random.PRNGKey(3), int(20 * 60 * FPS), FPS, config)
    found = blink.detect(1.0 - 0.7 * closure, FPS)
    assert abs(len(found.onsets) / 20.0 - 20.0) < 0.1 * 20.0
    assert abs(np.median(found.durations_s) - config.duration_s) <= 1.0 / FPS


def test_the_key_decides_the_blinks():
    a = blink.generate(jax.random.PRNGKey(0), 500, FPS)
    assert np.array_equal(a, blink.generate(jax.random.PRNGKey(0), 500, FPS))
    assert not np.array_equal(a, blink.generate(jax.random.PRNGKey(1), 500, FPS))


def test_a_longer_schedule_starts_with_a_shorter_one_and_the_stream_draws_it():
    """The stream draws the blinks offline generation draws: the schedule of n frames is the
    first n of a longer one, and BlinkStream's chunks (across its regrowths) are that schedule."""
    key = jax.random.PRNGKey(5)
    whole = blink.generate(key, 3000, FPS)
    assert np.array_equal(blink.generate(key, 700, FPS), whole[:700])
    assert (whole > 0.5).sum() > 0                      # blinks do occur in it
    stream = BlinkStream(key, horizon=100)
    sizes = [1, 37, 250, 1, 900, 411]
    parts, start = [], 0
    for size in sizes:
        parts.append(stream(start, size))
        start += size
    assert np.array_equal(np.concatenate(parts), whole[:start])


def test_detector_finds_square_dips():
    ear = np.full(250, 0.3)
    for start, length in ((30, 4), (120, 6), (200, 3)):
        ear[start:start + length] = 0.08
    found = blink.detect(ear, FPS)
    np.testing.assert_array_equal(found.onsets, [30, 120, 200])
    np.testing.assert_allclose(found.durations_s, np.array([4, 6, 3]) / FPS)


def test_closure_squeezes_the_eyes_and_nothing_else():
    landmarks = landmark_space.mean_face()
    kp = np.repeat(landmark_space.encode(landmarks)[None], 3, axis=0)
    out = blink.apply(kp, np.array([0.0, 0.5, 1.0], np.float32))
    np.testing.assert_array_equal(out[0], kp[0])
    others = [k for k in range(10) if k not in blink.EYE_KEYPOINTS]
    np.testing.assert_array_equal(out[:, others], kp[:, others])
    ear = blink.eye_aspect_ratio(landmark_space.decode(out))
    open_ear = blink.eye_aspect_ratio(landmarks)
    np.testing.assert_allclose(ear[0], open_ear, rtol=0.05)
    np.testing.assert_allclose(ear[1], open_ear * (1 - 0.5 * (1 - blink.SHUT_HEIGHT)),
                               rtol=0.1)
    assert ear[2] < 0.1 * open_ear


def test_bad_shapes_are_clear_errors():
    kp = np.zeros((4, 10, 6), np.float32)
    with pytest.raises(ValueError, match=r"closure must be \[T\] = \[4\]"):
        blink.apply(kp, np.zeros(3))
    with pytest.raises(ValueError, match=r"keypoints must be \[T, 10, 6\]"):
        blink.apply(kp[:, :9], np.zeros(4))
