"""The mouth model read from speech content (motion/lips.py): on synthetic mouths that open on
one viseme, ahead of it, in any head pose, the fit recovers the timing and the recorded sizes;
its prosody does not change with the recording's level; it survives JSON; ``msync train lips``
stores it in a model's model.json."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from tolerance import assert_close

from motion import articulation as ar
from motion import lips, saved_model
from motion.app import cli
from motion.talking_head import DEMO_MODEL_DIR
from syncers.data import content, dataset, landmark_space
from syncers.data.features import audio_features, feature_config
from syncers.data.layout import FPS, LANDMARK_SPACE
from syncers.data.phantom import audio as phantom_audio
from syncers.run.errors import InputError

OPEN = content.VISEMES.index("open")
LOWER_LIP = [56, 57, 58, 65, 66, 67]          # outer and inner lower lip, middle
OPENING = 0.08                                # in mean-face units, of a fully open frame


def _content(rng, n_frames):
    """``[T, V]`` one-hot visemes in runs of 2–6 frames among rest, closed, open and spread."""
    labels = []
    while len(labels) < n_frames:
        labels += [rng.choice([content.REST, content.VISEMES.index("closed"), OPEN,
                               content.VISEMES.index("spread")])] * int(rng.integers(2, 7))
    return np.eye(content.N_VISEMES, dtype=np.float32)[labels[:n_frames]]


def _clip(rng, n_frames=300, lead=2):
    """A clip whose lower lip drops by ``OPENING`` while the content is "open", ``lead`` frames
    before the sound, seen in a random head pose per frame."""
    visemes = _content(rng, n_frames)
    drop = OPENING * np.pad(visemes[:, OPEN], (0, lead), mode="edge")[lead:]
    landmarks = np.repeat(landmark_space.mean_face()[None], n_frames, axis=0)
    landmarks[:, LOWER_LIP, 1] += drop[:, None]
    angle = rng.uniform(-0.2, 0.2, n_frames)
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1),
                         np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    scale = rng.uniform(80, 120)
    landmarks = scale * np.einsum("tij,tnj->tni", rotation, landmarks) + rng.uniform(100, 200, 2)
    features = rng.normal(size=(4 * n_frames, 26)).astype(np.float32)
    return lips.LipClip(landmarks, visemes, features), drop


def _opening(offsets_Tx20x2):
    return offsets_Tx20x2[:, [17, 18, 19], 1].mean(axis=1)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    clips = [_clip(rng)[0] for _ in range(4)]
    model, report = lips.fit(clips, [_clip(rng)[0]], inputs="content", n_components=2)
    return model, report


def test_the_fit_recovers_the_mouths_timing_and_size(fitted):
    model, report = fitted
    assert report["val_r"][0] > 0.95
    clip, drop = _clip(np.random.default_rng(1))
    predicted = _opening(lips.predict(model, clip.content, None))
    assert np.corrcoef(predicted, drop)[0, 1] > 0.95
    # sizes come from the recorded mouths: open frames open by OPENING, closed ones not at all
    # (the offsets are from the rest mouth; the mean face's lower lip points move together)
    open_frames = drop == OPENING
    np.testing.assert_allclose(predicted[open_frames].mean(), OPENING, rtol=0.15)
    assert abs(predicted[drop == 0].mean()) < 0.1 * OPENING


def test_the_mouth_may_lead_the_sound_as_far_as_the_window_reads():
    rng = np.random.default_rng(2)
    clips = [_clip(rng, lead=3) for _ in range(4)]
    val = _clip(rng, lead=3)
    r = {}
    for after in (0, 4):
        model, _ = lips.fit([c for c, _ in clips], [val[0]], "content", before=2, after=after,
                            n_components=1)
        clip, drop = _clip(np.random.default_rng(3), lead=3)
        r[after] = np.corrcoef(_opening(lips.predict(model, clip.content, None)), drop)[0, 1]
    assert r[4] > 0.95 and r[0] < r[4] - 0.1


def test_a_mouth_that_ignores_the_speech_is_refused():
    rng = np.random.default_rng(7)

    def unrelated():
        clip, _ = _clip(rng)
        return lips.LipClip(clip.landmarks, _content(rng, len(clip.content)),
                            clip.audio_features)

    with pytest.raises(ValueError, match="no mouth shape follows the speech"):
        lips.fit([unrelated() for _ in range(3)], [unrelated()], "content", n_components=1)


def test_prosody_is_the_same_for_a_quieter_recording():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(400, 26)).astype(np.float32) - 5
    quieter = features + np.log(1 / 25)       # log-mel power of the audio divided by 5
    np.testing.assert_allclose(lips.prosody(quieter, 4), lips.prosody(features, 4), atol=1e-4)
    assert lips.prosody(features, 4).max() == 0.0           # the local peak is the reference
    assert lips.prosody(features, 4).min() >= lips.PROSODY_FLOOR


def test_prosody_reads_exactly_its_window():
    energy_rows = np.full((4 * 100, 26), -5.0, np.float32)
    energy_rows[4 * 60:4 * 61] += 3.0                        # frame 60 is loud
    p = lips.prosody(energy_rows, after=4)[:, 0]
    quiet = p.min()
    # frames 56..110 see frame 60 in t − 50 .. t + 4; the others do not
    assert np.all(p[56:111][p[56:111] != 0] == quiet) and p[60] == 0
    np.testing.assert_array_equal(p[:56], 0.0)
    assert np.all(p[np.r_[56:60, 61:100]] < 0)


def test_windows_are_the_frames_around_each_frame():
    frames = np.arange(5, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(lips.windows(frames, 1, 2),
                                  [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 4],
                                   [3, 4, 4, 4]])


def test_predict_in_pieces_reads_the_windows_around_each_frame(fitted, monkeypatch):
    """Offsets are predicted ``PREDICT_FRAMES`` at a time (memory flat in the length): the
    windows across the pieces' edges are those of the whole clip."""
    model, _ = fitted
    content = _content(np.random.default_rng(3), 101)
    whole = lips.predict(model, content, None)
    monkeypatch.setattr(lips, "PREDICT_FRAMES", 7)
    assert_close(lips.predict(model, content, None), whole, rel=1e-6,
                 scale=float(np.abs(whole).max()))


def test_json_round_trip_and_errors(fitted):
    model, _ = fitted
    again = lips.from_json(json.loads(json.dumps(model.to_json())))
    clip, _ = _clip(np.random.default_rng(5), n_frames=50)
    np.testing.assert_array_equal(lips.predict(again, clip.content, None),
                                  lips.predict(model, clip.content, None))
    raw = model.to_json()
    with pytest.raises(ValueError, match="lacks"):
        lips.from_json({k: v for k, v in raw.items() if k != "bias"})
    with pytest.raises(ValueError, match="weights"):
        lips.from_json({**raw, "weights": raw["weights"][:-1]})
    with pytest.raises(ValueError, match="inputs"):
        lips.from_json({**raw, "inputs": "loudness"})
    with pytest.raises(ValueError, match="non-decreasing"):
        lips.from_json({**raw, "recorded_quantiles": [q[::-1] for q in raw["recorded_quantiles"]]})


def test_content_lookahead_is_recorded_and_bounds_the_mouths_reach(fitted):
    """A model records the look-ahead its content was decoded with (one fitted before it was
    recorded reads as the default, 12); its mouth reads max(after + that, 2·after) frames
    ahead."""
    model, _ = fitted
    assert model.content_lookahead == content.DEFAULT_LOOKAHEAD == 12
    assert model.lookahead == model.after + 12
    raw = model.to_json()
    low = lips.from_json({**raw, "content_lookahead": 3})
    assert low.content_lookahead == 3 and low.lookahead == model.after + 3
    older = lips.from_json({k: v for k, v in raw.items() if k != "content_lookahead"})
    assert older.content_lookahead == 12
    with pytest.raises(ValueError, match="content_lookahead must be integers in 0..50"):
        lips.from_json({**raw, "content_lookahead": -1})
    prosody_only = lips.LipModel("prosody", 6, 2, *[np.zeros(1)] * 7, content_lookahead=3)
    assert prosody_only.lookahead == 4


def test_offsets_apply_to_landmark_keypoints(fitted):
    """The offsets are articulation's kind: ``motion.articulation.apply`` moves keypoints 5–9."""
    model, _ = fitted
    clip, drop = _clip(np.random.default_rng(6), n_frames=40)
    offsets = lips.predict(model, clip.content, None)
    keypoints = np.repeat(landmark_space.encode(landmark_space.template(
        landmark_space.MEAN_FACE_BOX))[None], 40, axis=0)
    moved = ar.apply(keypoints, offsets)
    changed = np.abs(moved - keypoints).max(axis=(0, 2)) > 0
    assert not changed[:5].any() and changed[5:].any()


def _speech_dataset(root, n_clips=3, n_frames=150):
    """A landmarks-v1 dataset with wavs: phantom utterances whose lower lip drops with the
    speech's relative loudness (the prosody), train clips and one val clip."""
    clips = {"train": [], "val": []}
    for seed in range(n_clips):
        split = "val" if seed == n_clips - 1 else "train"
        samples = phantom_audio.utterance(n_frames / FPS, seed=seed)
        features = audio_features(samples)
        drop = 0.01 * (lips.prosody(features, lips.DEFAULT_AFTER)[:n_frames, 0]
                       - lips.PROSODY_FLOOR)
        landmarks = 100 * np.repeat(landmark_space.mean_face()[None], n_frames, axis=0) + 50
        landmarks[:, LOWER_LIP, 1] += 100 * drop[:, None]
        dataset.write_clip(root, split, f"c{seed}", landmark_space.encode(landmarks), features,
                           landmarks=landmarks, samples=samples)
        clips[split].append((f"c{seed}", n_frames))
    dataset.write_manifest(root, clips, LANDMARK_SPACE, feature_config())
    return root


def test_train_lips_stores_the_model_in_model_json(tmp_path, capsys):
    data = _speech_dataset(tmp_path / "ds")
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    assert cli.main(["train", "lips", "--data", str(data), "--model", str(model)]) == 0, \
        capsys.readouterr().err
    assert "msync train lips" in capsys.readouterr().out
    meta = json.loads((model / "model.json").read_text())
    stored = saved_model.model_lips(saved_model.load_model(model)[1])
    assert stored.inputs == "both" and meta["lips_report"]["val_r"][0] > 0.5
    meta["lips"]["bias"] = [0.0] * 7
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="model.json.*lips"):
        saved_model.load_model(model)


def test_train_lips_low_latency_flags(tmp_path, capsys, monkeypatch):
    """``--after 2 --content-lookahead 3``: the window and the decoder's look-ahead are
    fitted and recorded as given; out of range → one line, exit 2."""
    data = _speech_dataset(tmp_path / "ds")
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    decoded = []
    real = content.content_features
    monkeypatch.setattr(content, "content_features",
                        lambda samples, lookahead=12: decoded.append(lookahead)
                        or real(samples, lookahead))
    assert cli.main(["train", "lips", "--data", str(data), "--model", str(model), "--after",
                     "2", "--content-lookahead", "3"]) == 0, capsys.readouterr().err
    assert set(decoded) == {3}
    stored = saved_model.model_lips(saved_model.load_model(model)[1])
    assert (stored.after, stored.content_lookahead, stored.lookahead) == (2, 3, 5)
    meta = json.loads((model / "model.json").read_text())
    assert meta["lips_report"]["content_lookahead"] == 3 and meta["lips"]["after"] == 2
    capsys.readouterr()
    assert cli.main(["train", "lips", "--data", str(data), "--model", str(model),
                     "--content-lookahead", "51"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--content-lookahead must be 0..50 frames" in err


@pytest.mark.parametrize("case, message", [
    ("phantom data", "landmarks-v1 dataset"), ("no wav", "needs its wav"),
    ("no model", "no such model")])
def test_train_lips_bad_input_is_one_line(tmp_path, capsys, case, message):
    data = _speech_dataset(tmp_path / "ds", n_frames=30)
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    if case == "phantom data":
        manifest = json.loads((data / "manifest.json").read_text())
        manifest["keypoint_space"] = "phantom-v1"
        (data / "manifest.json").write_text(json.dumps(manifest))
    elif case == "no wav":
        (data / "train" / "c0.wav").unlink()
    else:
        model = tmp_path / "absent"
    code = cli.main(["train", "lips", "--data", str(data), "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
