"""The offline landmarker (``syncers.data.landmarks``: dlib's HOG detector and 68-point predictor)
and
the ``landmarks-v1`` keypoint space (``syncers.data.landmark_space``)."""
from __future__ import annotations

import numpy as np
import pytest
from tolerance import assert_close

from syncers.data import anatomy, face, measures
from syncers.data import landmark_space as space
from syncers.data import landmarks as landmarker


def _face_landmarks(image):
    boxes = landmarker.detect_faces(image)
    assert boxes, "no face found"
    crop = face.crop_around(image, boxes[0])
    found = landmarker.detect_faces(crop.image, upsample=0)
    assert found
    return landmarker.to_crop_coords(landmarker.landmarks(crop.image, found[0]), 256)


def test_groups_partition_the_68_landmarks_and_mirror_is_an_involution():
    members = sorted(i for group in space.GROUPS for i in group)
    assert members == list(range(68))
    assert sorted(anatomy.MIRROR.tolist()) == list(range(68))
    np.testing.assert_array_equal(anatomy.MIRROR[anatomy.MIRROR], np.arange(68))
    points = np.random.default_rng(0).uniform(-1, 1, (3, 68, 2)).astype(np.float32)
    np.testing.assert_array_equal(space.mirror(space.mirror(points)), points)
    # a group maps onto its mirror group (left brow ↔ right brow, upper lip ↔ upper lip)
    for k, group in enumerate(space.GROUPS):
        mirrored = {int(anatomy.MIRROR[i]) for i in group}
        assert mirrored in [set(g) for g in space.GROUPS], space.GROUP_NAMES[k]


def test_mean_face_is_a_frontal_face_in_the_crop():
    mean = space.mean_face()
    assert mean.shape == (68, 2)
    assert mean[36, 0] < mean[45, 0]                   # the image's left eye is left
    assert mean[19, 1] < mean[30, 1] < mean[57, 1] < mean[8, 1]    # brow, nose, lip, chin
    assert 0.3 < measures.eye_distance(mean) < 1.0
    assert np.abs(mean.mean(axis=0)).max() < 0.2       # centred in the crop


def test_encode_decode_is_exact_for_affine_group_motion():
    # any per-group affine image of the mean face is reconstructed exactly by the first-order
    # model (with the similarity prior a non-similarity group is exact only if it is one, so
    # use similarities plus a translation per group)
    rng = np.random.default_rng(1)
    mean = space.mean_face()
    moved = np.empty_like(mean)
    for group in space.GROUPS:
        idx = list(group)
        angle, scale = rng.uniform(-0.3, 0.3), rng.uniform(0.8, 1.2)
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = mean[idx].mean(axis=0)
        moved[idx] = (mean[idx] - centre) @ rot.T + centre + rng.uniform(-0.1, 0.1, 2)
    keypoints = space.encode(moved)
    assert keypoints.shape == (10, 6)
    assert_close(space.decode(keypoints), moved, rel=1e-5)
    # the mean face itself: identity jacobians at the group centroids
    identity = space.encode(mean)
    assert_close(identity[:, 2:], np.tile([1, 0, 0, 1], (10, 1)), rel=1e-5)


def test_encode_checks_shapes():
    with pytest.raises(ValueError, match=r"\[\.\.\., 68, 2\]"):
        space.encode(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\[\.\.\., 10, 6\]"):
        space.decode(np.zeros((10, 4)))


def test_landmarks_land_on_the_face(real_media):
    image = face.load_image(real_media / "happy.png")
    points = _face_landmarks(image)
    assert points.shape == (68, 2) and points.dtype == np.float32
    # eyes above the nose tip above the mouth above the chin; left eye left of the right one
    eyes_y = points[36:48, 1].mean()
    assert eyes_y < points[30, 1] < points[48:68, 1].mean() < points[8, 1]
    assert points[36:42, 0].mean() < points[42:48, 0].mean()
    # in the expected regions of a 1.5× face-box crop: eyes in the upper half, mouth lower
    assert -0.5 < eyes_y < 0.1 and 0.05 < points[48:68, 1].mean() < 0.7
    assert np.abs(points[48:68, 0].mean()) < 0.2
    # the keypoints reconstruct the landmarks to a few % of the inter-ocular distance
    error = np.linalg.norm(space.decode(space.encode(points)) - points, axis=-1)
    assert error.mean() / measures.eye_distance(points) < 0.05


def test_no_face_in_noise_and_a_lost_face_is_reported():
    noise = np.random.default_rng(0).uniform(0, 1, (120, 120, 3)).astype(np.float32)
    assert landmarker.detect_faces(noise) == []
    with pytest.raises(landmarker.FaceLost, match="no face found in any frame"):
        landmarker.track(np.stack([noise] * 6), fps=25.0)


def test_track_interpolates_short_gaps_and_refuses_long_ones(real_media):
    image = face.load_image(real_media / "happy.png")
    crop = face.crop_around(image, landmarker.detect_faces(image)[0]).image
    blank = np.full_like(crop, 0.5)
    frames = np.stack([crop] * 10 + [blank] * 3 + [crop] * 12)
    track = landmarker.track(frames, fps=25.0)
    assert track.landmarks.shape == (25, 68, 2)
    assert track.detected.sum() == 22 and not track.detected[10:13].any()
    # a still face gives (nearly) the same landmarks in the interpolated frames
    assert np.abs(track.landmarks[11] - track.landmarks[0]).max() < 0.02
    long_gap = np.stack([crop] * 10 + [blank] * 20 + [crop] * 10)
    with pytest.raises(landmarker.FaceLost, match="longest gap 0.80 s"):
        landmarker.track(long_gap, fps=25.0)


def test_reconstruction_error_on_real_corpus_frames(real_corpus):
    # a few frames of a few clips: the first-order model reconstructs the 68 landmarks to a
    # small fraction of the inter-ocular distance (the note reports the whole corpus)
    from syncers.data import video as video_io
    videos = sorted((real_corpus / "videos").glob("*Obama*.mp4"))[:2]
    errors = []
    for path in videos:
        frames = video_io.read_video(path)[::25][:4]
        box = landmarker.detect_faces(frames[0])[0]
        for crop in face.crop_frames(frames, box):
            found = landmarker.detect_faces(crop, upsample=0)
            if found:
                points = landmarker.to_crop_coords(landmarker.landmarks(crop, found[0]), 256)
                gap = np.linalg.norm(space.decode(space.encode(points)) - points, axis=-1)
                errors.append(gap / measures.eye_distance(points))
    errors = np.concatenate(errors)
    assert errors.size >= 68 * 4
    assert errors.mean() < 0.03 and np.percentile(errors, 95) < 0.08


def test_float_images_convert_to_bytes_band_by_band_as_at_once():
    rng = np.random.default_rng(0)
    image = rng.uniform(-0.1, 1.1, (2 * landmarker._ROWS_PER_BAND + 7, 5, 3)).astype(np.float32)
    whole = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(landmarker._as_uint8(image), whole)


def test_a_weak_detection_beside_a_clear_face_is_dropped():
    # searched doubled, dlib also scores the astronaut's suit (0.1, beside her face's 1.2)
    # and boxes it larger than her face; it must not be taken as the largest face
    from skimage import data
    boxes = landmarker.detect_faces(data.astronaut(), upsample=1)
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0]
    assert 160 < x0 < 200 and 60 < y0 < 100, boxes


def test_the_bundled_photos_face_box_is_unchanged_by_the_second_look():
    # the astronaut is found at her size, so the doubled search, the score filter and the
    # banded conversion leave her box (and every crop and frame drawn from it) as it was
    from skimage import data
    assert landmarker.detect_faces(data.astronaut()) == [(179.0, 83.0, 267.0, 171.0)]
    assert landmarker.detect_faces(data.astronaut().astype(np.float32) / 255) == \
        [(179.0, 83.0, 267.0, 171.0)]


def test_a_preload_loads_the_models_once_and_a_use_waits_for_it(monkeypatch):
    import functools
    import threading
    import time
    started, loads = threading.Event(), []

    @functools.lru_cache(maxsize=1)             # as the real loader is
    def slow_load():
        started.set()
        time.sleep(0.2)
        loads.append(1)
        return ("dlib", "detector", "predictor")

    monkeypatch.setattr(landmarker, "_load_models", slow_load)
    landmarker.preload()
    assert started.wait(5)
    assert landmarker._models() == ("dlib", "detector", "predictor")   # waited, not reloaded
    assert loads == [1]


def test_a_failed_preload_leaves_the_error_to_the_first_use(monkeypatch):
    from syncers.run.errors import InputError

    def missing():
        raise InputError(None, "the dlib landmarker needs dlib")

    monkeypatch.setattr(landmarker, "_load_models", missing)
    landmarker.preload()
    with pytest.raises(InputError, match="needs dlib"):
        landmarker._models()
