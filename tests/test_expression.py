"""The expression space (motion/expression.py): on synthetic faces whose non-rigid motion is a
jaw drop and a raise of both brows, seen in any head pose, the fit finds those two directions
(one over the upper face); projecting keeps a frame moved rigidly, keeps a change in the span
and takes out one brow raised against the other, leaving the keypoints it does not span as
they were; the space survives JSON and ``msync train expression`` stores it."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from motion import expression, saved_model
from motion.app import cli
from motion.talking_head import DEMO_MODEL_DIR
from syncers.data import anatomy, dataset, landmark_space, measures
from syncers.data.features import feature_config
from syncers.data.layout import LANDMARK_SPACE
from syncers.run.errors import InputError

JAW_DROP = list(anatomy.JAW[4:13]) + [56, 57, 58, 65, 66, 67]     # chin and lower lip


def _pose(rng, landmarks_Tx68x2):
    """The landmarks in a random similarity per frame (rotation ±0.2 rad, scale 80–120)."""
    n = len(landmarks_Tx68x2)
    angle = rng.uniform(-0.2, 0.2, n)
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1),
                         np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    scale = rng.uniform(80, 120, n)[:, None, None]
    return scale * np.einsum("tij,tnj->tni", rotation, landmarks_Tx68x2) \
        + rng.uniform(100, 200, (n, 1, 2))


def _face(jaw, brows, left_brow_only=0.0):
    """Mean-face landmarks ``[T, 68, 2]`` with the jaw dropped by ``jaw [T]``, both brows raised
    by ``brows [T]`` and the left one alone by ``left_brow_only``."""
    landmarks = np.repeat(landmark_space.mean_face()[None], len(jaw), axis=0).astype(np.float64)
    landmarks[:, JAW_DROP, 1] += np.asarray(jaw)[:, None]
    landmarks[:, list(anatomy.LEFT_BROW) + list(anatomy.RIGHT_BROW), 1] -= \
        np.asarray(brows)[:, None]
    landmarks[:, anatomy.LEFT_BROW, 1] -= left_brow_only
    return landmarks


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    clips = []
    for _ in range(6):
        n = 120
        face = _face(rng.uniform(0, 0.15, n), rng.uniform(0, 0.05, n))
        face += rng.normal(0, 1e-4, face.shape)            # a landmarker's jitter
        clips.append(landmark_space.encode(_pose(rng, face)))
    return expression.fit(clips, 0.99, values=tuple(range(60))), clips


def test_the_fit_finds_the_two_directions_real_motion_takes(fitted):
    (space, report), clips = fitted
    assert report["components"] == 2 and space.n_components == 2
    assert report["frames"] == 720 and report["variance"] >= 0.99
    np.testing.assert_allclose(space.coefficients @ space.components, np.eye(2), atol=1e-9)
    # Over the upper face (the default) the jaw is not seen: one direction, the brows' raise.
    upper, report = expression.fit(clips, 0.99)
    assert upper.values == expression.UPPER_FACE and report["components"] == 1
    assert upper.coefficients.shape == (1, 22) and report["values"] == 22


def test_head_frame_round_trip_is_exact():
    rng = np.random.default_rng(1)
    keypoints = landmark_space.encode(_pose(rng, _face(rng.uniform(0, 0.1, 5), np.zeros(5))))
    aligned, similarity = expression.to_head_frame(keypoints)
    back = expression.from_head_frame(aligned, similarity)
    np.testing.assert_allclose(back, keypoints, atol=1e-4 * np.abs(keypoints).max())


def test_a_rigid_move_and_a_change_in_the_span_are_kept(fitted):
    (space, _), _ = fitted
    rng = np.random.default_rng(2)
    reference = landmark_space.encode(_face(np.zeros(1), np.zeros(1)))[0]
    moved = landmark_space.encode(_pose(rng, _face(np.zeros(4), np.zeros(4))))
    np.testing.assert_allclose(expression.project(space, moved, reference), moved,
                               atol=1e-4 * np.abs(moved).max())
    # The same frames talking: kept to within 2 % of the change (the brows are among the
    # points the head's pose is fitted on, so their raise is linear in the head's frame only
    # to first order).
    rng = np.random.default_rng(2)
    jaw, brows = np.linspace(0, 0.12, 4), np.linspace(0.04, 0, 4)
    talking = landmark_space.decode(landmark_space.encode(_pose(rng, _face(jaw, brows))))
    kept = landmark_space.decode(expression.project(space, landmark_space.encode(talking),
                                                    reference))
    change = np.abs(talking - landmark_space.decode(moved)).max()
    assert change > 5.0 and np.abs(kept - talking).max() < 0.02 * change


def test_one_brow_raised_against_the_other_is_taken_out(fitted):
    (space, _), _ = fitted
    rng = np.random.default_rng(3)
    reference = landmark_space.encode(_face(np.zeros(1), np.zeros(1)))[0]
    jaw = np.full(6, 0.1)
    wink = landmark_space.encode(_pose(rng, _face(jaw, np.zeros(6), left_brow_only=0.05)))
    kept = landmark_space.decode(expression.project(space, wink, reference))
    before = measures.brow_heights(landmark_space.decode(wink))
    after = measures.brow_heights(kept)
    # The wink: the left brow 0.05 mean-face units (0.07 eye distances) above the right.
    assert np.all(before[:, 0] - before[:, 1] > 0.06)
    assert np.all(np.abs(after[:, 0] - after[:, 1]) < 0.1 * (before[:, 0] - before[:, 1]))
    # ... while the jaw drop it came with stays.
    gap = measures.mouth_opening(kept) - measures.mouth_opening(landmark_space.decode(
        landmark_space.encode(_face(np.zeros(1), np.zeros(1)))))
    np.testing.assert_allclose(gap, gap[0], rtol=1e-3)
    assert gap[0] > 0.1


def test_values_of_names_whole_keypoints_and_positions():
    assert expression.values_of(keypoints=(1,), positions=(0, 2)) == \
        (0, 1, 6, 7, 8, 9, 10, 11, 12, 13)
    assert len(expression.UPPER_FACE) == 22


def test_an_upper_face_space_leaves_the_mouth_and_the_eyes_shapes_as_generated(fitted):
    _, clips = fitted
    upper, _ = expression.fit(clips, 0.99)
    rng = np.random.default_rng(5)
    reference = landmark_space.encode(_face(np.zeros(1), np.zeros(1)))[0]
    wink = landmark_space.encode(_pose(rng, _face(np.full(6, 0.1), np.zeros(6),
                                                  left_brow_only=0.05)))
    out = expression.project(upper, wink, reference)
    np.testing.assert_array_equal(out[:, 5:], wink[:, 5:])
    np.testing.assert_array_equal(out[:, 2:4, 2:], wink[:, 2:4, 2:])    # the eyes' shapes
    heights = measures.brow_heights(landmark_space.decode(out))
    assert np.all(np.abs(heights[:, 0] - heights[:, 1]) < 0.01)


def test_no_frames_give_no_frames(fitted):
    (space, _), _ = fitted
    assert expression.project(space, np.zeros((0, 10, 6)), np.zeros((10, 6))).shape == \
        (0, 10, 6)


def test_json_round_trip_and_errors(fitted):
    (space, _), _ = fitted
    back = expression.from_json(json.loads(json.dumps(space.to_json())))
    np.testing.assert_allclose(back.components, space.components, atol=1e-6)
    raw = space.to_json()
    with pytest.raises(ValueError, match=r"\[k, 60\]"):
        expression.from_json({**raw, "components": raw["components"][:-1]})
    with pytest.raises(ValueError, match="increasing indices"):
        expression.from_json({**raw, "values": [3, 1]})
    with pytest.raises(ValueError, match="invert each other"):
        expression.from_json({**raw, "components": (2 * np.asarray(raw["components"])).tolist()})
    with pytest.raises(ValueError, match="mapping"):
        expression.from_json([1, 2])
    with pytest.raises(ValueError, match="200 frames"):
        expression.fit([np.zeros((10, 10, 6)) + landmark_space.encode(
            landmark_space.mean_face()[None])])


def test_combined_spaces_project_each_part_as_its_own(fitted):
    _, clips = fitted
    upper, _ = expression.fit(clips, 0.99)
    lower, _ = expression.fit(clips, 0.99, values=expression.LOWER_FACE)
    both = expression.combine([lower, upper])
    assert both.values == tuple(sorted(expression.UPPER_FACE + expression.LOWER_FACE))
    assert both.n_components == upper.n_components + lower.n_components
    np.testing.assert_allclose(both.coefficients @ both.components, np.eye(both.n_components),
                               atol=1e-9)
    rng = np.random.default_rng(6)
    reference = landmark_space.encode(_face(np.zeros(1), np.zeros(1)))[0]
    wink = landmark_space.encode(_pose(rng, _face(np.full(6, 0.1), np.zeros(6),
                                                  left_brow_only=0.05)))
    wink[:, 5, 2:] *= 1.3                                  # a mouth corner stretched alone
    out = expression.project(both, wink, reference)
    upper_values, lower_values = list(expression.UPPER_FACE), list(expression.LOWER_FACE)
    flat = out.reshape(len(out), -1)
    np.testing.assert_allclose(flat[:, upper_values], expression.project(
        upper, wink, reference).reshape(len(out), -1)[:, upper_values], atol=1e-5)
    np.testing.assert_allclose(flat[:, lower_values], expression.project(
        lower, wink, reference).reshape(len(out), -1)[:, lower_values], atol=1e-5)
    np.testing.assert_array_equal(out[:, 2:4, 2:], wink[:, 2:4, 2:])   # spanned by neither
    with pytest.raises(ValueError, match="disjoint"):
        expression.combine([upper, upper])


def _talking(rng, jaw, brows):
    return landmark_space.encode(_pose(rng, _face(jaw, brows)))


def test_calibration_carries_the_generators_sizes_onto_real_faces(fitted):
    """Generated faces that open the jaw and raise the brows twice as far as the recorded ones,
    with the same timing: calibrated, the projection gives them the recorded sizes and keeps
    their timing; uncalibrated it keeps the doubled sizes."""
    (space, _), _ = fitted
    rng = np.random.default_rng(7)
    recorded, generated = [], []
    for _ in range(4):
        jaw = np.concatenate([[0.0], rng.uniform(0, 0.12, 99)])
        brows = np.concatenate([[0.0], rng.uniform(0, 0.04, 99)])
        recorded.append(_talking(rng, jaw, brows))
        generated.append(_talking(rng, 2 * jaw, 2 * brows))
    calibrated, report = expression.calibrate(space, recorded, generated)
    assert calibrated.calibrated and not space.calibrated
    assert report["calibration_frames"] == 400
    np.testing.assert_allclose(report["generated_over_recorded_spread"], 2.0, rtol=0.05)

    jaw = np.linspace(0, 0.24, 50)
    probe = _talking(rng, jaw, np.zeros(50))
    reference = recorded[0][0]

    def opening(keypoints):
        return measures.mouth_opening(landmark_space.decode(keypoints))
    # No change from x0 stays no change (the photo's own face at rest).
    still = np.repeat(reference[None], 3, axis=0)
    np.testing.assert_allclose(expression.project(calibrated, still, reference), still,
                               atol=1e-5 * np.abs(still).max())
    raw = opening(expression.project(space, probe, reference))
    kept = opening(expression.project(calibrated, probe, reference))
    recorded_open = opening(_talking(rng, jaw / 2, np.zeros(50)))
    # Timing: the calibrated opening rises where the generated one does.
    assert np.all(np.diff(kept) > 0)
    # Sizes: the recorded faces' (half the generated), not the generator's.
    spread = lambda values: values.max() - values.min()      # noqa: E731
    np.testing.assert_allclose(spread(kept), spread(recorded_open), rtol=0.1)
    np.testing.assert_allclose(spread(raw), 2 * spread(recorded_open), rtol=0.1)
    with pytest.raises(ValueError, match="paired"):
        expression.calibrate(space, recorded, generated[:2])


def test_calibration_keeps_the_photos_own_face(fitted):
    """Generated brows that only rise (changes from x0 of 0 to 0.08) against recorded ones that
    rise and fall (−0.04 to 0.04): rank for rank, no change would map to the recorded lowest
    brows; the map keeps it no change, so x0's own face is the photo's."""
    (space, _), _ = fitted
    rng = np.random.default_rng(9)
    recorded, generated = [], []
    for _ in range(4):
        brows = rng.uniform(-0.04, 0.04, 100)
        brows[0] = 0.0
        recorded.append(_talking(rng, np.zeros(100), brows))
        generated.append(_talking(rng, np.zeros(100), np.abs(2 * brows)))
    calibrated, _ = expression.calibrate(space, recorded, generated)
    levels = np.linspace(0.0, 1.0, expression.N_QUANTILES)
    firsts = [clip[0] for clip in recorded]
    generated_c = expression._coefficients(space, generated, firsts)
    recorded_c = expression._coefficients(space, recorded, firsts)
    ranked = [np.interp(0.0, np.quantile(generated_c[:, j], levels),
                        np.quantile(recorded_c[:, j], levels)) for j in range(2)]
    scale = np.abs(calibrated.map_to).max()
    assert np.abs(ranked).max() > 0.2 * scale    # rank for rank alone would move x0's face
    np.testing.assert_allclose(expression.map_coefficients(calibrated, np.zeros((1, 2))), 0.0,
                               atol=1e-9 * scale)
    still = np.repeat(recorded[0][:1], 3, axis=0)
    np.testing.assert_allclose(expression.project(calibrated, still, recorded[0][0]), still,
                               atol=1e-5 * np.abs(still).max())


def test_the_limit_keeps_motion_real_faces_make_and_bounds_what_they_do_not(fitted):
    """Limited (not carried) coefficients: unchanged within the recorded range, and a jaw
    dropped three times as far as any recorded one stops near the recorded widest."""
    (space, _), clips = fitted
    rng = np.random.default_rng(8)
    generated = [_talking(rng, rng.uniform(0, 0.15, 120), rng.uniform(0, 0.05, 120))
                 for _ in clips]
    limited, report = expression.calibrate(space, clips, generated, carried=0)
    assert report["carried"] == 0 and len(report["limited_share"]) == 2
    assert all(0.0 <= share <= 0.05 for share in report["limited_share"])
    firsts = [clip[0] for clip in clips]
    recorded_c = expression._coefficients(space, clips, firsts)
    low, high = np.quantile(recorded_c, [expression.LIMIT_LEVEL, 1 - expression.LIMIT_LEVEL],
                            axis=0)
    inside = np.linspace(low, high, 9)
    np.testing.assert_allclose(expression.map_coefficients(limited, inside), inside,
                               atol=1e-9 * np.abs(inside).max())
    far = high + 3 * (recorded_c.max(axis=0) - low)
    out = expression.map_coefficients(limited, np.stack([far, 2 * far]))
    assert np.all(out <= recorded_c.max(axis=0) + 1e-9) and np.all(out > high)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-4)      # saturated
    assert np.all(np.diff(expression.map_coefficients(
        limited, np.linspace(low - 1, high + 1, 200)), axis=0) >= 0)   # monotone


def test_calibrated_json_round_trip_and_errors(fitted):
    (space, _), clips = fitted
    calibrated, _ = expression.calibrate(space, clips, clips)
    raw = json.loads(json.dumps(calibrated.to_json()))
    back = expression.from_json(raw)
    np.testing.assert_allclose(back.map_to, calibrated.map_to,
                               atol=1e-6)
    assert back.map_from.shape == (2, expression.N_QUANTILES)
    assert "map_from" not in space.to_json()
    with pytest.raises(ValueError, match="both map_from and map_to"):
        expression.from_json({k: v for k, v in raw.items() if k != "map_to"})
    with pytest.raises(ValueError, match=r"non-decreasing \[2, Q\]"):
        expression.from_json({**raw, "map_to": raw["map_to"][:1]})
    with pytest.raises(ValueError, match=r"non-decreasing \[2, Q\]"):
        expression.from_json({**raw, "map_from": [row[::-1]
                                                              for row in
                                                              raw["map_from"]]})


def _dataset(root, rng):
    clips = {"train": [], "val": [], "test": []}
    for split, count in (("train", 3), ("val", 1)):
        for index in range(count):
            n = 100
            landmarks = _pose(rng, _face(rng.uniform(0, 0.15, n), rng.uniform(0, 0.05, n)))
            features = rng.normal(size=(4 * n, 26)).astype(np.float32)
            clip_id = f"{split}{index}"
            dataset.write_clip(root, split, clip_id, landmark_space.encode(landmarks), features,
                               landmarks=landmarks.astype(np.float32))
            clips[split].append((clip_id, n))
    dataset.write_manifest(root, clips, LANDMARK_SPACE, feature_config())
    return root


def test_train_expression_stores_the_space_in_model_json(tmp_path, capsys):
    data = _dataset(tmp_path / "ds", np.random.default_rng(4))
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    assert cli.main(["train", "expression", "--data", str(data), "--model", str(model),
                     "--variance", "0.99", "--lower-variance", "0", "--no-calibration"]) == 0, \
        capsys.readouterr().err
    out = capsys.readouterr().out
    assert "600 training frames (mirrored copies included), 1 direction holding" in out
    assert "lower face" not in out and "sizes" not in out
    stored = saved_model.model_expression(saved_model.load_model(model)[1])
    assert stored.n_components == 1 and stored.values == expression.UPPER_FACE
    assert not stored.calibrated
    # The defaults: the lower face beside it, calibrated on the model's generator.
    assert cli.main(["train", "expression", "--data", str(data), "--model",
                     str(model)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "of the lower face's; the upper face's sizes carried onto the recorded faces'" in out
    assert ", the lower face kept within their range" in out
    stored = saved_model.model_expression(saved_model.load_model(model)[1])
    assert stored.calibrated and stored.values == tuple(sorted(expression.UPPER_FACE
                                                               + expression.LOWER_FACE))
    meta = json.loads((model / "model.json").read_text())
    assert meta["expression_report"]["calibration_frames"] == 600
    assert cli.build_parser().parse_args(
        ["train", "expression", "--data", "d", "--model", "m"]).lower_variance == \
        expression.DEFAULT_LOWER_VARIANCE
    meta = json.loads((model / "model.json").read_text())
    meta["expression"]["variance"] = 2.0
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="model.json.*variance"):
        saved_model.load_model(model)
    assert cli.main(["train", "expression", "--data", str(data), "--model", str(model),
                     "--variance", "0.2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--variance must be from 0.5 to 1" in err
    assert cli.main(["train", "expression", "--data", str(data), "--model", str(model),
                     "--lower-variance", "0.3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lower-variance must be 0" in err
