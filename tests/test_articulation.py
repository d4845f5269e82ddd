"""The speech-driven articulation (motion/articulation.py): its alignment, its fit, its use in
keypoints, its stream and its storage in a saved model."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile
from generator_helpers import tiny_params
from tolerance import assert_close

from motion import articulation as ar
from motion import saved_model, source, stream
from motion.app import cli
from motion.generate import generate
from motion.generator import TINY
from motion.model import GeneratorModel
from motion.stream import ArticulationStream
from motion.talking_head import DEMO_MODEL_DIR
from render import renderer as render_api
from syncers.data import dataset, measures
from syncers.data import landmark_space as ls
from syncers.data.features import audio_features, feature_config
from syncers.data.layout import LANDMARK_SPACE
from syncers.data.phantom import audio as phantom_audio
from syncers.run.errors import InputError

N_BANDS = 26


@dataclasses.dataclass
class FakeClip:
    clip_id: str
    landmarks: np.ndarray
    audio_features: np.ndarray


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _clip(seed, n_frames=300, name="c"):
    """A face whose jaw drops in proportion to the speech's amplitude one frame later, and whose
    head turns, scales and moves at random: ``landmarks [T, 68, 2]``, ``audio_features
    [4T, 26]`` (log-mel-like: a louder sound raises every band)."""
    rng = np.random.default_rng(seed)
    amplitude = np.abs(np.convolve(rng.normal(size=4 * n_frames + 8), np.ones(8) / 8,
                                   "same")[:4 * n_frames])
    features = rng.normal(scale=0.1, size=(4 * n_frames, N_BANDS))
    features += 2 * np.log(amplitude + 0.01)[:, None]
    frame_amplitude = amplitude.reshape(n_frames, 4).mean(axis=1)
    opening = 0.1 * np.roll(frame_amplitude, 1)
    face = np.repeat(ls.mean_face()[None], n_frames, axis=0).copy()
    face[:, [56, 57, 58, 65, 66, 67], 1] += opening[:, None]
    angle = rng.uniform(-0.2, 0.2, n_frames)
    scale = rng.uniform(0.8, 1.2, n_frames)
    shift = rng.uniform(-0.1, 0.1, (n_frames, 2))
    moved = np.einsum("tnj,tij->tni", face, np.stack([_rotation(a) for a in angle])) \
        * scale[:, None, None] + shift[:, None]
    return FakeClip(name, moved.astype(np.float32), features.astype(np.float32)), opening


@pytest.fixture(scope="module")
def fitted():
    clips = [_clip(seed, name=f"c{seed}")[0] for seed in range(4)]
    val = [_clip(10, name="v")[0]]
    return ar.fit(clips, val, None)


def test_audio_windows_repeat_the_ends():
    features = np.arange(4 * 5 * 2, dtype=np.float32).reshape(20, 2)   # 5 frames of 4 rows
    windows = ar.audio_windows(features, before=2, after=1)
    per_frame = features.reshape(5, 8)
    assert windows.shape == (5, 4 * 8)
    np.testing.assert_array_equal(windows[0], np.concatenate(
        [per_frame[0], per_frame[0], per_frame[0], per_frame[1]]))
    np.testing.assert_array_equal(windows[4], np.concatenate(
        [per_frame[2], per_frame[3], per_frame[4], per_frame[4]]))


def test_the_aligned_mouth_does_not_see_the_head_pose():
    face = ls.mean_face()[None]
    turned = face @ _rotation(0.3).T * 1.7 + np.array([0.2, -0.1])
    assert_close(ar.aligned_mouth(turned), ar.aligned_mouth(face), rel=1e-9)
    assert_close(ar.aligned_mouth(face)[0], ls.mean_face()[48:68], rel=1e-9)


def _predicted_opening(articulation, clip):
    offsets = ar.predict(articulation, clip.audio_features)
    base = np.repeat(ls.encode(ls.mean_face())[None], len(offsets), axis=0)
    return measures.mouth_opening(ls.decode(ar.apply(base, offsets))) \
        - measures.mouth_opening(ls.mean_face()[None])


def test_the_linear_fit_predicts_the_jaw_from_the_loudness():
    clips = [_clip(seed, name=f"c{seed}")[0] for seed in range(4)]
    articulation, report = ar.fit(clips, [_clip(10, name="v")[0]], None, rectified=False,
                                  opening_gain=1.0)
    assert report["val_r"][0] > 0.9 and articulation.rest_level is None
    clip, opening = _clip(20)
    predicted = _predicted_opening(articulation, clip)
    assert np.corrcoef(predicted, opening)[0, 1] > 0.9
    # the gain gives the mouth the training mouths' spread, not a regression's shrunk one
    truth = measures.mouth_opening(clip.landmarks)
    assert 0.75 < predicted.std() / truth.std() < 1.33


def test_the_default_fit_opens_above_the_rest_level_only(fitted):
    articulation, report = fitted
    assert articulation.rest_level.shape == (1,)
    assert report["opening_gain"] == ar.DEFAULT_OPENING_GAIN
    clip, opening = _clip(20)
    predicted = _predicted_opening(articulation, clip)
    # never closer than the photo's mouth, open on the louder frames, following the jaw there
    assert predicted.min() > -1e-6 * np.abs(predicted).max()
    assert 0.3 < np.mean(predicted > 1e-6 * predicted.max()) < 0.6
    assert np.corrcoef(predicted, opening)[0, 1] > 0.7
    # louder means a larger coefficient, whatever the sign the SVD gave the component
    windows = ar.audio_windows(ar.loudness(clip.audio_features), articulation.before,
                               articulation.after)
    assert np.corrcoef(ar.coefficients(articulation, windows)[:, 0],
                       opening)[0, 1] > 0.9
    # silence is the photo's mouth
    silent = np.full_like(clip.audio_features, -12.0)
    assert np.abs(ar.predict(articulation, silent)).max() < 1e-6


def test_the_gain_parts_the_lips_and_leaves_the_upper_lip_and_the_width():
    # recorded mouths whose whole mouth also moves down with the opening (a nod) and whose
    # corners draw in
    def nodding(seed, name):
        clip, opening = _clip(seed, n_frames=300, name=name)
        rng = np.random.default_rng(seed)
        face = np.repeat(ls.mean_face()[None], 300, axis=0).copy()
        face[:, [56, 57, 58, 65, 66, 67], 1] += opening[:, None]
        face[:, 48:68, 1] += 0.5 * opening[:, None]
        face[:, [48, 60], 0] += 0.2 * opening[:, None]
        face[:, [54, 64], 0] -= 0.2 * opening[:, None]
        shift = rng.uniform(-0.05, 0.05, (300, 2))
        return dataclasses.replace(clip, landmarks=(face + shift[:, None]).astype(np.float32))
    clips = [nodding(seed, f"n{seed}") for seed in range(4)]
    articulation, _ = ar.fit(clips, [nodding(10, "v")], None)
    offsets = ar.predict(articulation, nodding(20, "t").audio_features)      # [T, 20, 2]
    parting = offsets[:, ar.LOWER_INNER_LIP, 1] - offsets[:, ar.UPPER_INNER_LIP, 1]
    assert parting.max() > 0
    # the upper lip stays where it is; the lower one drops by the parting
    assert np.abs(offsets[:, ar.UPPER_LIP, 1].mean(axis=1)).max() < 1e-5 * parting.max()
    # the corners draw in by the recorded share of the parting (0.2 each), divided by the gain
    narrowing = offsets[:, ar.LEFT_CORNER, 0] - offsets[:, ar.RIGHT_CORNER, 0]
    open_frames = parting > 0.1 * parting.max()
    assert_close(narrowing[open_frames] / parting[open_frames],
                 np.full(open_frames.sum(), 0.4 / ar.DEFAULT_OPENING_GAIN), rel=0.05)


def test_above_rest_is_the_excess_over_the_rest_level():
    coefficients = np.array([[0.0, 1.0], [1.0, -2.0], [3.0, 0.5]], np.float32)
    np.testing.assert_array_equal(ar.above_rest(coefficients, np.array([1.0, 0.0])),
                                  [[0.0, 1.0], [0.0, 0.0], [2.0, 0.5]])


def test_apply_takes_the_lopsided_change_out_of_the_mouth():
    face = ls.mean_face()
    x0 = ls.encode(face[None])[0]
    twisted = face.copy()
    twisted[[48, 49, 59, 60], 1] -= 0.05           # the image's left corner up, the right not
    even = face.copy()
    even[[48, 49, 59, 60, 53, 54, 55, 64], 1] -= 0.025
    keypoints = ls.encode(np.stack([face, twisted]))
    out = ar.apply(keypoints, np.zeros((2, 20, 2)), 1.0, x0)
    # what is left is the symmetric half: both corners up by half as much
    assert_close(ls.decode(out)[1, 48:68], ls.decode(ls.encode(even[None]))[0, 48:68],
                 rel=1e-3, scale=1.0)
    assert_close(out[0], keypoints[0], rel=1e-5, scale=1.0)
    # a mouth slid sideways as a whole comes back under the nose; one opened evenly stays open
    shifted, opened = face.copy(), face.copy()
    shifted[48:68, 0] += 0.05
    opened[[56, 57, 58, 65, 66, 67], 1] += 0.05
    out = ar.apply(ls.encode(np.stack([face, shifted, opened])), np.zeros((3, 20, 2)), 1.0, x0)
    assert_close(ls.decode(out)[1], ls.decode(x0[None])[0], rel=1e-4, scale=1.0)
    assert_close(ls.decode(out)[2, 48:68], ls.decode(ls.encode(opened[None]))[0, 48:68],
                 rel=1e-4, scale=1.0)
    with pytest.raises(ValueError, match="reference"):
        ar.apply(keypoints, np.zeros((2, 20, 2)), 1.0, x0[:5])


def test_apply_moves_only_the_mouth_and_jaw_and_turns_with_the_head(fitted):
    articulation, _ = fitted
    clip, _ = _clip(21, n_frames=40)
    offsets = ar.predict(articulation, clip.audio_features)
    face = np.repeat(ls.mean_face()[None], 40, axis=0)
    keypoints = ls.encode(face)
    moved = ar.apply(keypoints, offsets)
    np.testing.assert_array_equal(moved[:, :5], keypoints[:, :5])
    # the jaw drops with the lower lip: the chin by JAW_FOLLOW of its drop, the ears hardly
    # (the jaw group's fit leans towards a similarity: a stretch comes back within 10 %, and
    # the ends move by an eighth of the chin)
    mouth = ar.aligned_mouth(face)
    capped = offsets * ar.opening_factor(offsets, mouth, mouth[0])[:, None, None]
    drop = np.maximum(capped[:, ar.LOWER_LIP_CENTRE, 1], 0)
    jaw = ls.decode(moved)[:, :17] - face[:, :17]
    assert drop.max() > 0
    assert_close(jaw[:, 8, 1], ar.JAW_FOLLOW * drop, rel=0.1, scale=float(drop.max()))
    assert np.abs(jaw[:, [0, 16]]).max() < 0.2 * ar.JAW_FOLLOW * drop.max()
    np.testing.assert_array_equal(ar.apply(keypoints, offsets, 0.0), keypoints)
    # the same offsets on a turned, scaled head: the same mouth in the head's frame
    turned = ls.encode(face @ _rotation(0.25).T * 1.3 + np.array([0.1, 0.05]))
    assert_close(ar.aligned_mouth(ls.decode(ar.apply(turned, offsets))),
                 ar.aligned_mouth(ls.decode(moved)), rel=3e-4)
    # the scale multiplies the offsets before the opening's limit
    assert_close(ar.apply(keypoints, offsets, 0.5), ar.apply(keypoints, 0.5 * offsets),
                 rel=1e-6, scale=float(np.abs(keypoints).max()))


def test_apply_in_pieces_gives_each_frame_its_own_mouth(fitted, monkeypatch):
    """Long keypoints are moved ``APPLY_FRAMES`` at a time (memory flat in the length), each
    piece against the whole clip's first frame: the frames of moving them at once."""
    articulation, _ = fitted
    clip, _ = _clip(21, n_frames=40)
    offsets = ar.predict(articulation, clip.audio_features)
    face = ls.mean_face()[None] + np.random.default_rng(2).normal(scale=0.01, size=(40, 68, 2))
    keypoints = ls.encode(face @ _rotation(0.1).T)
    whole = ar.apply(keypoints, offsets, 0.8)
    monkeypatch.setattr(ar, "APPLY_FRAMES", 7)
    assert_close(ar.apply(keypoints, offsets, 0.8), whole, rel=1e-6,
                 scale=float(np.abs(keypoints).max()))


def test_the_opening_approaches_its_limit_softly():
    face = ls.mean_face()
    keypoints = ls.encode(np.repeat(face[None], 5, axis=0))
    mouth = ar.aligned_mouth(face[None])[0]
    width = np.linalg.norm(mouth[ar.RIGHT_CORNER] - mouth[ar.LEFT_CORNER])
    rest_gap = mouth[ar.LOWER_INNER_LIP, 1] - mouth[ar.UPPER_INNER_LIP, 1]
    headroom = ar.MAX_OPENING * width - rest_gap
    # the lower lip dropped by a hundredth, a half, one, three and ten times the headroom
    drops = headroom * np.array([0.01, 0.5, 1.0, 3.0, 10.0])
    offsets = np.zeros((5, 20, 2))
    offsets[:, [56 - 48, 57 - 48, 58 - 48, 65 - 48, 66 - 48, 67 - 48], 1] = drops[:, None]
    factor = ar.opening_factor(offsets, np.repeat(mouth[None], 5, axis=0), mouth)
    assert_close(factor * drops, headroom * np.tanh(drops / headroom), rel=1e-9,
                 scale=float(headroom))
    assert_close(factor[0], 1.0, rel=1e-4)                   # a small opening is as predicted
    gaps = ar.aligned_mouth(ls.decode(ar.apply(keypoints, offsets, 1.0, keypoints[0])))
    gaps = gaps[:, ar.LOWER_INNER_LIP, 1] - gaps[:, ar.UPPER_INNER_LIP, 1]
    assert np.all(np.diff(gaps) > 0)                         # louder still opens wider
    assert gaps[-1] <= ar.MAX_OPENING * width * 1.01        # never past the widest real mouth
    assert gaps[-1] >= 0.95 * ar.MAX_OPENING * width
    # a mouth already open as wide takes no more; closing offsets are left as they are
    wide = mouth.copy()
    wide[[56 - 48, 57 - 48, 58 - 48, 65 - 48, 66 - 48, 67 - 48], 1] += headroom
    assert ar.opening_factor(offsets, np.repeat(wide[None], 5, axis=0), mouth).max() < 1e-6
    np.testing.assert_array_equal(ar.opening_factor(-offsets, np.repeat(mouth[None], 5, 0),
                                                    mouth), np.ones(5))


@pytest.mark.parametrize("chunk, linear", [(1, False), (7, False), (64, False), (7, True)])
def test_the_stream_gives_the_offline_values(fitted, chunk, linear):
    articulation, _ = fitted
    if linear:
        articulation = dataclasses.replace(articulation, rest_level=None)
    clip, _ = _clip(22, n_frames=50)
    rng = np.random.default_rng(3)
    keypoints = ls.encode(clip.landmarks) + rng.normal(scale=1e-3, size=(50, 10, 6)).astype(
        np.float32)
    offline = ar.apply(keypoints, ar.predict(articulation, clip.audio_features))
    stream = ArticulationStream(articulation)
    out, rows = [], clip.audio_features
    lag = 10          # keypoints come out of the generator's stream after their look-ahead
    for start in range(0, 4 * 50, 4 * chunk):
        stream.push_rows(rows[start:start + 4 * chunk])
        ready = max(0, min(50, (start + 4 * chunk) // 4 - lag))
        out.append(stream.push(keypoints[stream.n_out + stream._waiting.shape[0]:ready]))
        assert stream.buffered <= articulation.before + articulation.after + 1 + lag + chunk
    out.append(stream.push(keypoints[stream.n_out + stream._waiting.shape[0]:]))
    out.append(stream.close())
    assert_close(np.concatenate(out), offline, rel=1e-5)


def test_the_json_round_trip_and_malformed_maps(fitted):
    articulation, _ = fitted
    back = ar.from_json(json.loads(json.dumps(articulation.to_json())))
    np.testing.assert_array_equal(back.weights, articulation.weights)
    raw = articulation.to_json()
    for change, message in [({"weights": [[1.0]]}, "disagree"), ({"before": -1}, "before"),
                            ({"feature_scale": [0.0] * len(raw["feature_scale"])}, "positive"),
                            ({"components": None}, "arrays")]:
        with pytest.raises(ValueError, match=message):
            ar.from_json({**raw, **change})
    with pytest.raises(ValueError, match="lacks"):
        ar.from_json({"before": 1})
    np.testing.assert_array_equal(back.rest_level, articulation.rest_level)
    # a map of the first format (no rest level) is applied linearly
    assert ar.from_json({k: v for k, v in raw.items() if k != "rest_level"}).rest_level is None
    for bad in ([1.0, 2.0], [float("nan")], "x", [[1.0]]):
        with pytest.raises(ValueError, match="rest_level"):
            ar.from_json({**raw, "rest_level": bad})
    with pytest.raises(ValueError, match="opening_gain"):
        ar.fit([_clip(0)[0]], [_clip(1)[0]], None, opening_gain=0.0)


def test_a_saved_model_keeps_it_and_refuses_a_broken_one(fitted, tmp_path):
    articulation, report = fitted
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    saved_model.write_articulation(model, articulation, report)
    _, info = saved_model.load_model(model)
    np.testing.assert_array_equal(saved_model.model_articulation(info).components,
                                  articulation.components)
    meta = json.loads((model / "model.json").read_text())
    meta["articulation"]["weights"] = [[0.5]]
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="model.json.*disagree"):
        saved_model.load_model(model)


def _landmark_dataset(root, n_clips=3):
    """A landmarks-v1 dataset of :func:`_clip` faces: train clips and one val clip."""
    clips = {"train": [], "val": []}
    for seed in range(n_clips):
        split = "val" if seed == n_clips - 1 else "train"
        clip, _ = _clip(seed, n_frames=120, name=f"c{seed}")
        dataset.write_clip(root, split, clip.clip_id, ls.encode(clip.landmarks),
                           clip.audio_features, landmarks=clip.landmarks)
        clips[split].append((clip.clip_id, 120))
    dataset.write_manifest(root, clips, LANDMARK_SPACE, feature_config())
    return root


def test_train_articulation_stores_it_and_generate_opens_the_mouth_with_it(tmp_path, capsys):
    data = _landmark_dataset(tmp_path / "ds")
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    meta = json.loads((model / "model.json").read_text())
    meta.pop("articulation", None)
    (model / "model.json").write_text(json.dumps(meta))
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, phantom_audio.utterance(2.0, seed=1), 16000)

    def keypoints(name, *flags):
        out = tmp_path / f"{name}.npz"
        # the bundled model's default mouth is its lip model; this one is the articulation's
        assert cli.main(["generate", "--model", str(model), "--audio", str(speech), "--out",
                         str(tmp_path / f"{name}.mp4"), "--keypoints-out", str(out),
                         "--mouth", "loudness", *flags]) == 0, capsys.readouterr().err
        with np.load(out, allow_pickle=False) as npz:
            return npz["keypoints"]

    without = keypoints("without")
    without_lips = keypoints("without0", "--lip-scale", "0")
    assert cli.main(["train", "articulation", "--data", str(data), "--model", str(model)]) == 0
    assert "msync train articulation" in capsys.readouterr().out
    _, info = saved_model.load_model(model)
    assert saved_model.model_articulation(info) is not None
    with_it = keypoints("with")
    changed = np.abs(with_it - without).max(axis=(0, 2)) > 1e-4
    # the mouth (these faces drop the lower lip) and the jaw with it, nothing else
    assert changed[8] and set(np.flatnonzero(changed)) <= {5, 6, 7, 8, 9}
    # --lip-scale scales the articulation with the finest branch: 0 is no lip motion at all
    np.testing.assert_array_equal(keypoints("with0", "--lip-scale", "0"), without_lips)


def test_generate_draws_the_source_at_its_own_pose(tmp_path, capsys, monkeypatch):
    """A recording loud from its first frame opens frame 0's mouth; the renderer's source must
    stay the photo's keypoints, or every quieter frame would close the photo's mouth."""
    sources = []
    real = render_api.prepare
    monkeypatch.setattr(render_api, "prepare", lambda kind, image, kp_source, *args, **kwargs:
                        sources.append(np.array(kp_source))
                        or real(kind, image, kp_source, *args, **kwargs))
    rng = np.random.default_rng(0)
    loud_start = rng.normal(size=32000) * np.where(np.arange(32000) < 6400, 0.5, 0.02)
    speech = tmp_path / "speech.wav"
    soundfile.write(speech, loud_start.astype(np.float32), 16000)
    outputs = {}
    for name, flags in (("with", []), ("plain", ["--lip-scale", "0"])):
        out = tmp_path / f"{name}.npz"
        assert cli.main(["generate", "--audio", str(speech), "--out", str(tmp_path / f"{name}.mp4"),
                         "--keypoints-out", str(out), *flags]) == 0, capsys.readouterr().err
        with np.load(out, allow_pickle=False) as npz:
            outputs[name] = npz["keypoints"]
    # frame 0 is articulated, the source is not
    assert np.abs(outputs["with"][0] - outputs["plain"][0]).max() > 1e-3
    assert_close(sources[0], outputs["plain"][0], rel=1e-6, scale=1.0)
    assert_close(sources[1], outputs["plain"][0], rel=1e-6, scale=1.0)


@pytest.mark.parametrize("case, message", [
    ("phantom data", "landmarks-v1 dataset"), ("no val", "train and val"),
    ("no model", "no such model")])
def test_train_articulation_bad_input_is_one_line(tmp_path, capsys, case, message):
    data = _landmark_dataset(tmp_path / "ds")
    model = tmp_path / "model"
    shutil.copytree(DEMO_MODEL_DIR, model)
    if case == "phantom data":
        manifest = json.loads((data / "manifest.json").read_text())
        manifest["keypoint_space"] = "phantom-v1"
        (data / "manifest.json").write_text(json.dumps(manifest))
    elif case == "no val":
        manifest = json.loads((data / "manifest.json").read_text())
        manifest["splits"]["val"] = []
        (data / "manifest.json").write_text(json.dumps(manifest))
    else:
        model = tmp_path / "absent"
    code = cli.main(["train", "articulation", "--data", str(data), "--model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_the_streamer_applies_it_as_generate_does(fitted):
    articulation, _ = fitted
    model = GeneratorModel(tiny_params(TINY), TINY)
    samples = phantom_audio.utterance(2.5, seed=4)
    image = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
    face_source = source.prepare_source(image, LANDMARK_SPACE, crop=False)
    streamer = stream.Streamer(model, face_source, None, keypoint_space=LANDMARK_SPACE,
                               articulation_map=articulation, lip_scale=0.7)
    frames = []
    for start in range(0, samples.size, 3000):
        frames += streamer.push(samples[start:start + 3000])
    frames += streamer.close()
    streamed = np.stack([f.keypoints for f in frames])
    features = audio_features(samples)
    offline = ar.apply(generate(model, streamer.x0, features, lip_scale=0.7),
                       ar.predict(articulation, features), 0.7)
    assert_close(streamed, offline, rel=1e-5)
    assert streamer.buffered()["articulation_frames"] <= 40
    with pytest.raises(InputError, match="articulation moves landmarks-v1"):
        stream.Streamer(model, face_source, None, articulation_map=articulation)


def test_articulate_is_apply_per_sequence_and_none_is_identity(fitted):
    articulation, _ = fitted
    clips = [_clip(seed, n_frames=30)[0] for seed in (30, 31)]
    keypoints = np.stack([ls.encode(c.landmarks) for c in clips])
    audio = np.stack([c.audio_features for c in clips])
    batch = ar.articulate(articulation, keypoints[:, :25], audio, 0.5)
    for b in range(2):
        np.testing.assert_array_equal(batch[b], ar.apply(
            keypoints[b, :25], ar.predict(articulation, audio[b])[:25], 0.5))
    np.testing.assert_array_equal(ar.articulate(None, keypoints, audio), keypoints)
