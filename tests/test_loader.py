"""Training windows: exact alignment, determinism, and each augmentation's effect."""
import numpy as np
import pytest
from tolerance import assert_close

from syncers.data.dataset import Clip
from syncers.data.windows import Augment, WindowLoader
from syncers.run.errors import InputError


def indexed_clip(clip_id, n_frames, offset=0.0):
    """Keypoint x = frame index, feature value = feature index / 4: alignment is readable."""
    frames = np.arange(n_frames, dtype=np.float32) + offset
    kp = np.zeros((n_frames, 10, 6), np.float32)
    kp[..., 0] = frames[:, None]
    kp[..., 2] = kp[..., 5] = 1.0
    feats = np.repeat((np.arange(4 * n_frames, dtype=np.float32) / 4 + offset)[:, None], 26, 1)
    return Clip(clip_id, kp, feats)


CLIPS = [indexed_clip("a", 60), indexed_clip("b", 45, 1000.0), indexed_clip("short", 10)]


def test_windows_align_exactly():
    loader = WindowLoader(CLIPS, window=40, batch_size=16, seed=3)
    batch = loader.batch(0)
    assert batch["keypoints"].shape == (16, 40, 10, 6)
    assert batch["audio_features"].shape == (16, 160, 26)
    for kp, feats, start in zip(batch["keypoints"], batch["audio_features"], batch["start"]):
        frames = kp[:, 0, 0]
        base = 1000.0 if frames[0] >= 1000 else 0.0
        np.testing.assert_array_equal(frames - base, np.arange(start, start + 40))
        # features 4t..4t+3 belong to video frame t
        np.testing.assert_array_equal(np.floor(feats[:, 0] - base), np.repeat(frames - base, 4))


def test_short_clips_are_skipped_and_all_short_is_an_error():
    loader = WindowLoader(CLIPS, window=40, batch_size=64, seed=0)
    assert {c.clip_id for c in loader.clips} == {"a", "b"}
    with pytest.raises(InputError, match="no clip has the 40 frames"):
        WindowLoader([CLIPS[2]], window=40, batch_size=1, seed=0)


def test_deterministic_for_a_seed():
    aug = Augment()
    one = WindowLoader(CLIPS, 40, 8, seed=5, augment=aug)
    two = WindowLoader(CLIPS, 40, 8, seed=5, augment=aug)
    for step in (0, 7):
        a, b = one.batch(step), two.batch(step)
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    other = WindowLoader(CLIPS, 40, 8, seed=6, augment=aug).batch(0)
    assert not np.array_equal(other["keypoints"], one.batch(0)["keypoints"])
    assert not np.array_equal(one.batch(1)["start"], one.batch(2)["start"])


def test_augmentations_stay_in_their_ranges():
    plain = WindowLoader(CLIPS, 40, 32, seed=1).batch(0)
    aug = Augment(smooth_prob=0.0)
    augmented = WindowLoader(CLIPS, 40, 32, seed=1, augment=aug).batch(0)
    # Same windows either way (the augmentation draws come after the window draws).
    np.testing.assert_array_equal(plain["start"], augmented["start"])
    jac_scale = augmented["keypoints"][:, 0, 0, 2]            # j11 was 1: now the scale
    assert np.all((0.9 <= jac_scale) & (jac_scale <= 1.1)) and np.ptp(jac_scale) > 0.02
    shift_y = augmented["keypoints"][:, 0, 0, 1]              # y was 0: now the translation
    assert np.all(np.abs(shift_y) <= 0.16) and np.ptp(shift_y) > 0.05
    # x = scale · frame + shift: recover both per window and check against the plain frames
    x_aug, x_plain = augmented["keypoints"][:, :, 0, 0], plain["keypoints"][:, :, 0, 0]
    # coordinates cross 0: an rtol-only check fails on rounding there; the floor is scaled
    scaled = jac_scale[:, None] * x_plain
    assert_close(x_aug, scaled + (x_aug[:, :1] - scaled[:, :1]), rel=1e-5)
    delta = augmented["audio_features"] - plain["audio_features"]
    assert np.allclose(delta, delta[:, :1, :1], atol=1e-3)  # one constant offset per window
    ranges = plain["audio_features"].max(axis=(1, 2)) - plain["audio_features"].min(axis=(1, 2))
    assert np.all(np.abs(delta[:, 0, 0]) <= 0.1 * ranges + 1e-4)


def test_smoothing_is_a_box3_filter():
    rng = np.random.default_rng(0)
    kp = rng.normal(size=(50, 10, 6)).astype(np.float32)
    clip = Clip("n", kp, np.zeros((200, 26), np.float32))
    aug = Augment(scale=0.0, translate=0.0, feature_offset=0.0, smooth_prob=1.0)
    batch = WindowLoader([clip], 50, 1, seed=0, augment=aug).batch(0)
    smoothed = batch["keypoints"][0]
    np.testing.assert_allclose(smoothed[1:-1], (kp[:-2] + kp[1:-1] + kp[2:]) / 3, atol=1e-5)


def test_flipped_keypoints_are_used_when_present():
    kp = np.zeros((40, 10, 6), np.float32)
    flipped = np.ones((40, 10, 6), np.float32)
    clip = Clip("f", kp, np.zeros((160, 26), np.float32), keypoints_flipped=flipped)
    aug = Augment(scale=0.0, translate=0.0, feature_offset=0.0, smooth_prob=0.0, flip_prob=0.5)
    batch = WindowLoader([clip], 40, 200, seed=0, augment=aug).batch(0)
    used_flip = batch["keypoints"][:, 0, 0, 0] == 1.0
    assert 0.35 < used_flip.mean() < 0.65
