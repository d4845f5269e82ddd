"""The mouth and speech measures (``syncers.data.measures``) and the face anatomy
(``syncers.data.anatomy``) on constructed inputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

from syncers.data import anatomy, landmark_space, measures
from syncers.data.layout import FPS, LANDMARK_SPACE, PHANTOM_SPACE, SAMPLES_PER_FRAME


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _face_with_opening(opening_T: np.ndarray) -> np.ndarray:
    """``[T, 68, 2]``: the mean face whose inner lips are ``opening`` eye distances apart (the
    lower inner lip moved straight down from the upper one)."""
    face = landmark_space.mean_face()
    eye = measures.eye_distance(face)
    out = np.repeat(face[None], len(opening_T), axis=0)
    out[:, anatomy.LOWER_INNER_LIP] = face[anatomy.UPPER_INNER_LIP]
    out[:, anatomy.LOWER_INNER_LIP, 1] += np.asarray(opening_T)[:, None] * eye
    return out


def test_the_anatomy_partitions_the_face_and_mirrors_it():
    parts = (anatomy.JAW, anatomy.BROWS, anatomy.NOSE, anatomy.EYES, anatomy.MOUTH)
    assert sorted(np.concatenate(parts).tolist()) == list(range(anatomy.N_LANDMARKS))
    assert anatomy.RIGID.tolist() == list(range(17, 48))
    assert set(anatomy.RIGID.tolist()) == set(np.concatenate(
        [anatomy.BROWS, anatomy.NOSE, anatomy.EYES]).tolist())
    assert anatomy.MOUTH.tolist() == anatomy.OUTER_LIPS.tolist() + anatomy.INNER_LIPS.tolist()
    # a left part's mirror is the right part, and the inner lips' facing pairs stay facing
    assert sorted(anatomy.MIRROR[anatomy.LEFT_EYE].tolist()) == anatomy.RIGHT_EYE.tolist()
    assert sorted(anatomy.MIRROR[anatomy.LEFT_BROW].tolist()) == anatomy.RIGHT_BROW.tolist()
    assert set(anatomy.MIRROR[anatomy.UPPER_INNER_LIP].tolist()) == \
        set(anatomy.UPPER_INNER_LIP.tolist())
    with pytest.raises(ValueError):
        anatomy.MOUTH[0] = 0                       # read-only: no caller can change a set


def test_mouth_opening_is_in_eye_distances_whatever_the_pose():
    opening = np.array([0.0, 0.05, 0.2])
    faces = _face_with_opening(opening)
    assert_close(measures.mouth_opening(faces), opening, rel=1e-9, scale=0.2)
    moved = faces @ _rotation(0.4).T * 2.5 + np.array([0.3, -0.2])
    assert_close(measures.mouth_opening(moved), opening, rel=1e-9, scale=0.2)
    assert_close(measures.eye_distance(moved), 2.5 * measures.eye_distance(faces), rel=1e-12)
    with pytest.raises(ValueError, match=r"\[\.\.\., 68, 2\]"):
        measures.mouth_opening(np.zeros((5, 2)))


def test_keypoint_mouth_opening_per_space():
    opening = np.array([0.0, 0.15])
    keypoints = landmark_space.encode(_face_with_opening(opening))
    decoded = measures.mouth_opening(landmark_space.decode(keypoints))
    assert_close(measures.keypoint_mouth_opening(keypoints, LANDMARK_SPACE), decoded, rel=1e-12)
    assert decoded[1] > decoded[0] + 0.1
    phantom = np.zeros((1, 10, 6))
    phantom[0, 2, :2], phantom[0, 3, :2] = (-0.2, 0.0), (0.2, 0.0)        # eyes 0.4 apart
    phantom[0, 7, :2], phantom[0, 8, :2] = (0.0, 0.3), (0.0, 0.38)        # lips 0.08 apart
    assert measures.keypoint_mouth_opening(phantom, PHANTOM_SPACE)[0] == pytest.approx(0.2)
    assert measures.keypoint_mouth_opening(phantom, "fomm-vox256") is None


def test_frame_rms_of_known_tones():
    amplitudes = np.array([0.5, 0.0, 0.1])
    t = np.arange(SAMPLES_PER_FRAME) / SAMPLES_PER_FRAME
    samples = np.concatenate([a * np.sin(2 * np.pi * 8 * t) for a in amplitudes])
    # a whole number of periods per frame: a sine's RMS is its amplitude over √2
    assert_close(measures.frame_rms(samples), amplitudes / np.sqrt(2), rel=1e-9, scale=0.5)
    # trailing samples are dropped by default, zero-padded to an asked-for length
    assert len(measures.frame_rms(samples[:-10])) == 2
    padded = measures.frame_rms(samples[:-SAMPLES_PER_FRAME // 2], n_frames=4)
    assert_close(padded, [0.5 / np.sqrt(2), 0.0, 0.1 / np.sqrt(2) / np.sqrt(2), 0.0],
                 rel=1e-9, scale=0.5)


def test_mel_loudness_is_the_rows_amplitude_and_a_frame_their_geometric_mean():
    features = np.full((8, 26), -np.inf)
    features[:, 0] = np.log([1.0, 4.0, 9.0, 16.0, 1.0, 1.0, 1.0, 1.0])   # one band's energy
    assert_close(measures.mel_loudness(features), [1, 2, 3, 4, 1, 1, 1, 1], rel=1e-12)
    assert_close(measures.frame_mel_loudness(features), [24 ** 0.25, 1.0], rel=1e-12)
    assert measures.frame_mel_loudness(features[:7]).shape == (1,)   # whole frames only


def test_mel_loudness_in_blocks_is_each_rows_own(monkeypatch):
    features = np.random.default_rng(4).normal(size=(1003, 26)).astype(np.float32)
    whole = measures.mel_loudness(features)
    monkeypatch.setattr(measures, "LOUDNESS_ROWS", 64)
    np.testing.assert_array_equal(measures.mel_loudness(features), whole)


def test_pauses_need_200_ms_of_quiet():
    n_frames = 100
    features = np.zeros((4 * n_frames, 26))
    features[4 * 10:4 * 16] = -20.0                    # 6 quiet frames: a pause
    features[4 * 50:4 * 53] = -20.0                    # 3 quiet frames: not a pause
    features[4 * 70:4 * 90] = -20.0                    # 20 quiet frames
    paused = measures.pauses(features)
    assert paused.shape == (n_frames,)
    np.testing.assert_array_equal(np.flatnonzero(paused),
                                  np.r_[np.arange(10, 16), np.arange(70, 90)])


def test_speech_frames_bridge_short_gaps_only():
    envelope = np.full(60, 0.1)
    envelope[:5] = 1e-3                  # 40 dB down at the start: not speech
    envelope[20:23] = 1e-3               # a 120 ms gap inside speech: speech
    envelope[30:40] = 1e-3               # a 400 ms pause: not speech
    envelope[45] = 0.01                  # 20 dB down: within the range, speech
    envelope[55:] = 1e-3                 # the end: not speech
    speech = measures.speech_frames(envelope)
    expected = np.zeros(60, bool)
    expected[5:30] = expected[40:55] = True
    np.testing.assert_array_equal(speech, expected)
    assert not measures.speech_frames(np.full(50, 1e-5)).any()    # digital silence
    assert measures.speech_frames(np.zeros(0)).shape == (0,)


def test_best_lag_r_finds_the_lag_and_a_constant_series_has_none():
    rng = np.random.default_rng(5)
    leader = np.repeat(rng.uniform(0, 1, 60), 5)
    follower = np.r_[np.zeros(2), leader[:-2]]               # 2 frames late
    r, lag = measures.best_lag_r(follower, leader)
    assert lag == 2 and r == pytest.approx(1.0, abs=1e-9)
    early = np.r_[leader[1:], np.zeros(1)]                   # 1 frame early
    assert measures.best_lag_r(early, leader, measures.OPENING_LAGS)[1] == -1
    assert measures.opening_r(early, leader) == pytest.approx(1.0, abs=1e-9)
    # lags outside the set are not searched: 1 frame early is not a lag of 0..3
    assert measures.envelope_r(early, leader) < 0.9
    # a constant series has no correlation: NaN, not 0
    assert np.all(np.isnan(measures.lagged_r(np.ones(300), leader, range(4))))
    r_flat, lag_flat = measures.best_lag_r(np.ones(300), leader)
    assert np.isnan(r_flat) and lag_flat == 0
    # ... however its mean rounds: 0.7 held has a std of 2e-16, not 0
    assert np.isnan(measures.best_lag_r(np.full(300, 0.7), leader)[0])
    assert np.isnan(measures.best_lag_r(leader[:4], leader[:4], [2])[0])   # 2 pairs: none
    # series of different lengths: the frames both have
    assert measures.best_lag_r(follower[:250], leader)[0] == pytest.approx(1.0, abs=1e-9)


def test_opening_summary_counts_closures_over_speech():
    # 2 s of speech: closed (0.0) runs starting at frames 10 and 30, open (0.2) otherwise
    opening = np.full(60, 0.2)
    opening[10:14] = opening[30:32] = 0.0
    opening[50:] = 0.0                         # a closure in the silence that follows
    speech = np.zeros(60, bool)
    speech[:50] = True
    summary = measures.opening_summary(opening, speech)
    assert summary["closed_share"] == pytest.approx(6 / 50)
    assert summary["closures_per_second"] == pytest.approx(2 / (50 / FPS))
    assert summary["mean"] == pytest.approx(0.2 * 44 / 50)
    assert summary["p90"] == pytest.approx(0.2)
    assert all(np.isnan(v) for v in measures.opening_summary(opening, ~np.ones(60, bool))
               .values())
    with pytest.raises(ValueError, match="both be"):
        measures.opening_summary(opening, speech[:10])


def test_lmd_ignores_head_pose_and_measures_the_mouth_in_eye_distances():
    opened = _face_with_opening(np.array([0.1, 0.1]))
    closed = _face_with_opening(np.array([0.0, 0.0]))
    turned = opened @ _rotation(0.3).T * 1.7 + np.array([0.2, -0.1])
    assert_close(measures.mouth_landmark_distance(turned, opened), [0.0, 0.0], rel=1e-9,
                 scale=0.1)
    # three of the 20 mouth landmarks move by 0.1 eye distances (in the mean face's pose)
    assert_close(measures.mouth_landmark_distance(opened, closed), [0.1 * 3 / 20] * 2,
                 rel=1e-9)
    with pytest.raises(ValueError, match="both be"):
        measures.mouth_landmark_distance(opened, closed[:1])


def test_the_aligned_mouth_does_not_see_the_head_pose():
    face = landmark_space.mean_face()[None]
    turned = face @ _rotation(0.3).T * 1.7 + np.array([0.2, -0.1])
    assert_close(measures.aligned_mouth(turned), measures.aligned_mouth(face), rel=1e-9)
    assert_close(measures.aligned_mouth(face)[0], landmark_space.mean_face()[anatomy.MOUTH],
                 rel=1e-9)


def test_the_mouth_measures_bench_reads_a_clip_by_every_pairing():
    from bench.mouth_measures import clip_measures
    from syncers.data.dataset import Clip
    from syncers.data.features import audio_features

    rng = np.random.default_rng(3)
    amplitude = np.repeat(rng.uniform(0.05, 0.5, 20), 5)                  # 100 frames
    t = np.arange(SAMPLES_PER_FRAME) / 16000
    samples = np.concatenate([a * np.sin(2 * np.pi * 220 * t) for a in amplitude])
    landmarks = _face_with_opening(0.3 * amplitude).astype(np.float32)
    clip = Clip(clip_id="c", keypoints=landmark_space.encode(landmarks),
                audio_features=audio_features(samples), landmarks=landmarks)
    out = clip_measures(clip, samples, len(amplitude))
    assert out["r_landmarks_envelope"] == pytest.approx(1.0, abs=1e-6)
    assert out["r_keypoints_envelope"] > 0.99 and out["r_landmarks_mel_loudness"] > 0.95
    assert out["speech_share"] == 1.0                        # loud throughout: all speech
    assert out["speech_closed_share"] == pytest.approx(np.mean(0.3 * amplitude < 0.05))


def test_brow_heights_are_in_eye_distances_whatever_the_pose():
    face = landmark_space.mean_face().astype(np.float64)
    base = measures.brow_heights(face)
    assert np.all(base > 0) and base[0] == pytest.approx(base[1], rel=0.05)
    raised = face.copy()
    raised[anatomy.LEFT_BROW, 1] -= 0.1 * measures.eye_distance(face)    # y down: up
    heights = measures.brow_heights(raised)
    assert heights[0] - base[0] == pytest.approx(0.1, rel=1e-2)     # the eyes are not quite level
    assert heights[1] == pytest.approx(base[1], rel=1e-9)
    # rolled 30°, scaled and moved, the heights stay
    th = np.deg2rad(30.0)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    posed = 2.5 * raised @ rot.T + np.array([0.3, -0.2])
    np.testing.assert_allclose(measures.brow_heights(posed), heights, rtol=1e-9)


def test_brow_motion_separates_raising_both_from_a_wink():
    face = landmark_space.mean_face().astype(np.float64)
    eye = float(measures.eye_distance(face))
    wave = 0.05 * eye * np.sin(np.linspace(0.0, 6 * np.pi, 60))
    both, wink = np.repeat(face[None], 60, axis=0), np.repeat(face[None], 60, axis=0)
    both[:, anatomy.LEFT_BROW, 1] -= wave[:, None]
    both[:, anatomy.RIGHT_BROW, 1] -= wave[:, None]
    wink[:, anatomy.LEFT_BROW, 1] -= wave[:, None]
    wink[:, anatomy.RIGHT_BROW, 1] += wave[:, None]
    spread = float(np.std(wave / eye))
    together, apart = measures.brow_motion(both), measures.brow_motion(wink)
    # moved straight up the image: the mean face's eyes are not quite level (rel 1e-2)
    assert together["brow_spread"] == pytest.approx(spread, rel=1e-2)
    assert apart["brow_spread"] == pytest.approx(spread, rel=1e-2)
    assert together["brow_asymmetry"] == pytest.approx(0.0, abs=1e-12)
    assert apart["brow_asymmetry"] == pytest.approx(2 * spread, rel=1e-2)
