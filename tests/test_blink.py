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


def _linear_eye(closure: np.ndarray) -> np.ndarray:
    """An eye aspect ratio ``[T]`` that a closure ``[T]`` lowers in proportion."""
    return 1.0 - 0.7 * closure


def _keypoint_eye():
    """The eye the renderer draws: the aspect ratio of the mean face's landmarks decoded from
    its keypoints closed by ``blink.apply``, as a function of the closure (the face held still;
    tabulated on a fine grid of closures, interpolated)."""
    grid = np.linspace(0.0, 1.0, 2001, dtype=np.float32)
    kp = np.repeat(landmark_space.encode(landmark_space.mean_face())[None], grid.size, axis=0)
    ear = blink.eye_aspect_ratio(landmark_space.decode(blink.apply(kp, grid)))
    assert np.all(np.diff(ear) < 0)                  # each closure its own ratio
    return lambda closure: np.interp(closure, grid, ear)


def _measured(closure: np.ndarray, n: int, eye=_linear_eye, fps: float = FPS):
    """The blinks a viewer measures on the first ``n`` frames of ``closure``, as ``detect``
    finds them on the ``eye`` it closes, and whether one is in progress
    on the last frame (not measured: the video cut it, and detect's running median, padded
    with the last frame, with it). Returns the blinks, which are whole ``[n_found]``, and the
    frame from which the lids are moving to the end (``n`` if they are at rest on the last)."""
    found = blink.detect(eye(closure[:n]), fps)
    still = np.flatnonzero(closure[:n] == 0)[-1] + 1
    return found, found.onsets < still, still


def _check_every_length(config, seeds, eye=_linear_eye, seconds=120.0, exact_until_s=30.0,
                        fps=FPS):
    """The least rate of whole blinks, the greatest of all blinks found (a cut one included)
    and the shortest and longest whole blink over every key of ``seeds`` and every length of
    more than 10 s up to ``seconds``. ``detect`` runs on the video cut to each length where
    the count of whole or of found blinks steps (where the rate is most extreme) up to
    ``exact_until_s``, and is checked there to find the full video's blinks; beyond, the
    counts come from the full video's blinks."""
    n_max, n_min = int(seconds * fps), int(10 * fps) + 1            # 10.04 s at 25 fps
    lengths = np.arange(n_min, n_max + 1)
    lo, hi, durations = np.inf, 0.0, []
    for seed in seeds:
        closure = blink.generate(jax.random.PRNGKey(seed), n_max, fps, config)
        assert closure[0] == 0.0                                # the first frame is the photo
        full = blink.detect(eye(closure), fps)
        moving = np.diff(np.concatenate([[0], (closure > 0).astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(moving == 1), np.flatnonzero(moving == -1)
        # just before a blink is whole (its lids back at rest), and as one starts to show
        cuts = {*ends, *(ends + 1), *(starts[:, None] + np.arange(8)).ravel(),
                *range(n_min, n_min + 25)}
        for n in sorted(c for c in cuts if n_min <= c <= min(n_max, exact_until_s * fps)):
            found, whole, still = _measured(closure, n, eye, fps)
            # the cut video's whole blinks are the full one's, measured alike
            before = full.onsets < still
            assert np.array_equal(found.onsets[whole], full.onsets[before]), (seed, n)
            assert np.array_equal(found.durations_s[whole], full.durations_s[before]), (seed, n)
            assert (~whole).sum() <= (still < n), (seed, n)          # at most the one cut
            lo = min(lo, 60 * whole.sum() * fps / n)
            hi = max(hi, 60 * len(found.onsets) * fps / n)
            durations.extend(found.durations_s[whole])
        # every length: the full video's blinks whose lids are back at rest by its last frame
        zeros = np.flatnonzero(closure == 0)
        still = zeros[np.searchsorted(zeros, lengths) - 1] + 1                  # [lengths]
        whole = np.searchsorted(full.onsets, still)
        shown = whole + (still < lengths)
        lo = min(lo, (60 * whole * fps / lengths).min())
        hi = max(hi, (60 * shown * fps / lengths).max())
        durations.extend(full.durations_s[full.onsets < still[-1]])
    return lo, hi, min(durations), max(durations)


@pytest.mark.parametrize("regularity, n_seeds, eye", [
    (2.0, 200, "linear"), (0.05, 50, "linear"), (2.0, 50, "keypoints")])
def test_every_video_over_10_s_has_a_human_rate_and_duration(regularity, n_seeds, eye):
    """The guarantee of the issue, measured as a viewer would: on every video of more than
    10 s, 8–30 blinks a minute, each 100–400 ms half-closed (rate_bounds's reasoning). The
    default intervals, intervals pushed to their bounds (a U-shaped beta), which come near the
    least and greatest rates rate_bounds allows, and the eye the keypoints draw."""
    config = blink.BlinkConfig(regularity=regularity)
    least, greatest = blink.rate_bounds(config, FPS)
    assert 8.0 <= least and greatest <= 30.0
    eye = _linear_eye if eye == "linear" else _keypoint_eye()
    lo, hi, shortest, longest = _check_every_length(config, range(n_seeds), eye)
    assert least <= lo and hi <= greatest, (lo, hi, least, greatest)
    assert 0.1 - 1e-9 <= shortest and longest <= 0.4 + 1e-9, (shortest, longest)


def test_the_bounds_hold_at_another_frame_rate():
    """At 30 fps too (rate_bounds takes the frame into its margin)."""
    config = blink.BlinkConfig()
    least, greatest = blink.rate_bounds(config, 30.0)
    lo, hi, shortest, longest = _check_every_length(config, range(20), _linear_eye, 60.0, 20.0,
                                                    fps=30.0)
    assert 8.0 <= least <= lo and hi <= greatest <= 30.0
    assert 0.1 - 1e-9 <= shortest and longest <= 0.4 + 1e-9, (shortest, longest)


def test_a_bound_that_breaks_the_guarantee_shows_in_rate_bounds():
    """Intervals up to 7 s leave a 14 s video with one whole blink: rate_bounds says so."""
    least, _ = blink.rate_bounds(blink.BlinkConfig(max_interval_s=7.0), FPS)
    assert least < 8.0
    with pytest.raises(ValueError, match="ordered and positive"):
        blink.BlinkConfig(min_interval_s=0.5)                # shorter than a blink's movement


def test_long_run_rate_matches_the_configuration():
    """The mean rate is 60 / the intervals' midpoint: 15 a minute by default (the corpus's
    14.9), 20 with intervals of 2–4 s; durations keep their median."""
    for config, rate in ((blink.BlinkConfig(), 15.0),
                         (blink.BlinkConfig(min_interval_s=2.0, max_interval_s=4.0), 20.0)):
        closure = blink.generate(jax.random.PRNGKey(3), int(60 * 60 * FPS), FPS, config)
        found = blink.detect(1.0 - 0.7 * closure, FPS)
        assert abs(len(found.onsets) / 60.0 - rate) < 0.03 * rate, len(found.onsets)
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
    # across the blocks of BLOCK blinks: 64 × ≥ 2.5 s is ≥ 4000 frames
    longer = blink.generate(key, 20000, FPS)
    for n in (0, 1, 251, 700, 2999):
        assert np.array_equal(blink.generate(key, n, FPS), whole[:n])
    assert np.array_equal(longer[:3000], whole)
    assert np.array_equal(blink.generate(key, 9001, FPS), longer[:9001])
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
