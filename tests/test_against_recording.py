"""Against the recording (``motion.against_recording``, ``msync evaluate --against``): the
recording scored against itself is perfect, a still photo has no correlation and the photo's
closed share, another clip's speech moves the mouth elsewhere; the section reaches metrics.json
and metrics.md; a clip without its wav is one line."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from test_generator_evaluate import SYNCERS  # the tiny syncers: compile in seconds
from tolerance import assert_close

from motion import against_recording as ar
from motion import talking_head
from motion.app import cli
from syncers.data import dataset, landmark_space, measures
from syncers.data import video as video_io
from syncers.data.features import audio_features, feature_config
from syncers.data.landmarks import FaceLost
from syncers.data.layout import FPS, LANDMARK_SPACE, SAMPLES_PER_FRAME
from syncers.data.phantom import audio as phantom_audio
from syncers.run.errors import InputError

LOWER_LIP = [56, 57, 58, 65, 66, 67]          # outer and inner lower lip, middle


def _speech(n_frames: int, seed: int) -> np.ndarray:
    samples = phantom_audio.utterance(n_frames / FPS + 0.1, seed=seed)
    return samples[:n_frames * SAMPLES_PER_FRAME].astype(np.float32)


def _recording(samples: np.ndarray) -> np.ndarray:
    """``[T, 68, 2]``: the mean face (crop coordinates) with its lips closed, the lower lip
    dropped by the speech envelope one frame later."""
    envelope = measures.frame_rms(samples)
    drop = 0.3 * np.r_[0.0, envelope[:-1]] / envelope.max()
    rest = landmark_space.mean_face().copy()
    rest[[67, 66, 65]] = rest[[61, 62, 63]]           # inner lips together: closed at rest
    landmarks = np.repeat(rest[None], len(envelope), axis=0)
    landmarks[:, LOWER_LIP, 1] += drop[:, None]
    return landmarks


def test_the_recording_against_itself_is_perfect_and_a_still_photo_has_no_r():
    samples = _speech(150, seed=1)
    recorded = _recording(samples)
    itself = ar.row_measures(recorded, recorded, samples)
    assert itself["r_opening"] == pytest.approx(1.0, abs=1e-12)
    assert itself["lmd"] == pytest.approx(0.0, abs=1e-12)
    opening = measures.mouth_opening(recorded)
    speech = measures.speech_frames(measures.frame_rms(samples, len(opening)))
    for name, value in measures.opening_summary(opening, speech).items():
        assert itself[name] == pytest.approx(value, rel=1e-12)
    assert itself["r_loudness"] > 0.9           # the lip was made to follow the envelope
    # one frame late is still the recording's mouth: r within ±2 frames
    late = np.concatenate([recorded[:1], recorded[:-1]])
    assert ar.row_measures(late, recorded, samples)["r_opening"] == pytest.approx(1.0, abs=1e-9)

    still = np.repeat(recorded[:1], len(recorded), axis=0)     # frame 0: lips closed
    held = ar.row_measures(still, recorded, samples)
    assert np.isnan(held["r_opening"]) and np.isnan(held["r_loudness"])
    assert held["closed_share"] == 1.0 and held["closures_per_second"] == 0.0
    assert held["mean"] == pytest.approx(opening[0], rel=1e-9)
    expected_lmd = measures.mouth_landmark_distance(still, recorded).mean()
    assert_close(held["lmd"], expected_lmd, rel=1e-9)
    assert held["lmd"] > 0.01
    assert np.isnan(held["brow_r_loudness"]) and np.isnan(itself["brow_r_loudness"])

    # brows lowered with the envelope (a frown on loud frames): r −1 with loudness
    envelope = measures.frame_rms(samples, len(recorded))
    frowning = recorded.copy()
    frowning[:, 17:27, 1] += 0.1 * envelope[:, None] / envelope.max()
    assert ar.row_measures(frowning, recorded, samples)["brow_r_loudness"] == \
        pytest.approx(-1.0, abs=1e-3)


def test_another_clips_speech_is_tiled_to_the_length():
    samples = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(ar.tiled(samples, 12), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    np.testing.assert_array_equal(ar.tiled(samples, 3), [0, 1, 2])


def _dataset(root, n_test=2, n_frames=60, n_train=0, train_frames=200, wav=True):
    """A landmarks-v1 dataset of :func:`_recording` faces with their wavs; each clip's source is
    a short video of a grey frame (no face dlib finds)."""
    video = root / "videos" / "grey.mp4"
    video.parent.mkdir(parents=True)
    video_io.write_video(video, np.full((3, 64, 64, 3), 128, np.uint8))
    clips = {"train": [], "test": []}
    for split, count, frames in (("test", n_test, n_frames), ("train", n_train, train_frames)):
        for i in range(count):
            samples = _speech(frames, seed=10 * i + len(split))
            landmarks = _recording(samples)
            clip_id = f"{split}{i}"
            dataset.write_clip(root, split, clip_id, landmark_space.encode(landmarks),
                               audio_features(samples), samples=samples if wav else None,
                               landmarks=landmarks,
                               meta={"source": str(video), "keypoint_space": LANDMARK_SPACE,
                                     "features": feature_config("logmel")})
            clips[split].append((clip_id, frames))
    dataset.write_manifest(root, clips, LANDMARK_SPACE, feature_config("logmel"))
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("against") / "ds")


def _template_track(frames):
    """A stand-in for dlib on rendered frames: the mean face in every frame."""
    return np.repeat(landmark_space.mean_face()[None], len(frames), axis=0)


def test_every_row_and_space_on_the_bundled_model(data):
    model = talking_head.load(None)
    # crop=False: the grey frame is animated as a face in the image's centre, and drawn
    options = talking_head.GenerationOptions(crop=False)
    result = ar.evaluate(model, data, "test", "rendered", options, progress=False,
                         retrack_fn=_template_track)
    assert result["mouth"] == "content" and len(result["clips"]) == 2
    clip = result["clips"][0]
    assert set(clip["keypoints"]) == {"generated", "loudness", "still", "shuffled",
                                      "recording", "recording_keypoints"}
    assert set(clip["rendered"]) == {"generated", "loudness", "still", "shuffled", "recording"}
    kp = clip["keypoints"]
    assert kp["recording"]["r_opening"] == pytest.approx(1.0, abs=1e-12)
    assert kp["recording"]["lmd"] == 0.0
    assert kp["recording_keypoints"]["r_opening"] > 0.99      # the keypoint round trip
    assert np.isnan(kp["still"]["r_opening"])
    assert np.isfinite(kp["generated"]["r_opening"]) and kp["generated"]["lmd"] > 0
    # another clip's speech moves the mouth otherwise than this clip's
    assert kp["shuffled"]["r_opening"] != pytest.approx(kp["generated"]["r_opening"], abs=1e-3)
    assert kp["generated"]["mean"] != pytest.approx(kp["loudness"]["mean"], rel=1e-3)
    # the stand-in tracker sees a still face in every rendered row
    assert np.isnan(clip["rendered"]["generated"]["r_opening"])
    # the same measures (NaN, like a still brow's r with loudness, in the same places)
    assert clip["rendered"]["recording"].keys() == kp["recording"].keys()
    np.testing.assert_array_equal(list(clip["rendered"]["recording"].values()),
                                  list(kp["recording"].values()))

    summary = result["summary"]
    assert summary["keypoints"]["recording"]["clips"] == 2
    assert summary["keypoints"]["recording"]["mean_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert summary["keypoints"]["still"]["r_opening"] is None
    assert summary["keypoints"]["still"]["n_r_opening"] == 0
    assert result["targets"]["space"] == "rendered" and len(result["targets"]["checks"]) == 7
    # the mesh's fold measure of each clip's generated frames, summed: the clamp folds none
    frames = [c["folds"]["frames"] for c in result["clips"]]
    assert all(f > 0 for f in frames)
    assert result["folds"] == {"clips": 2, "frames": sum(frames), "folded": 0, "cracked": 0,
                               "min_jacobian": min(c["folds"]["min_jacobian"]
                                                   for c in result["clips"])}
    assert result["folds"]["min_jacobian"] > 0
    text = ar.markdown(result)
    assert "## Against the recording" in text and "still photo" in text
    assert "generated (content mouth)" in text
    assert f"0 of {sum(frames)} frames folded, 0 cracked, over 2 clips" in text
    json.dumps(ar.json_ready(result), allow_nan=False)


def test_a_face_lost_in_the_rendered_frames_leaves_the_keypoints(data):
    def lost(frames):
        raise FaceLost("no face found in any frame of the crop")

    model = talking_head.load(None)
    options = talking_head.GenerationOptions(crop=False)
    recording = ar.read_recordings(data, "test")[0]
    out = ar.measure_clip(model, talking_head.resolve(model, options), recording, None,
                          retrack_fn=lost)
    assert out["rendered"] is None and "shuffled" not in out["keypoints"]
    assert any("lost the face" in note for note in out["notes"])


def test_a_missing_video_is_measured_from_the_recorded_first_frame(data, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(data, root)
    for npz in (root / "test").glob("*.npz"):
        clip = dataset.read_clip(root, "test", npz.stem)
        dataset.write_clip(root, "test", npz.stem, clip.keypoints, clip.audio_features,
                           landmarks=clip.landmarks, meta={**clip.meta,
                                                           "source": str(tmp_path / "gone.mp4")})
    recordings = ar.read_recordings(root, "test")
    assert recordings[0].photo is None and "no such video" in recordings[0].note
    model = talking_head.load(None)
    out = ar.measure_clip(model, talking_head.resolve(model, talking_head.GenerationOptions()),
                          recordings[0], recordings[1].samples)
    assert out["rendered"] is None and "keypoints only" in out["notes"][0]
    assert np.isfinite(out["keypoints"]["generated"]["lmd"])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """``msync evaluate --model`` (a copy of the bundled model) with its default --against on a
    landmarks-v1 dataset with train clips for tiny syncers."""
    tmp = tmp_path_factory.mktemp("against-cli")
    data = _dataset(tmp / "ds", n_test=2, n_frames=50, n_train=3)
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(SYNCERS))
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(tmp / "syncers"),
                     "--config", str(tmp / "tiny.yaml"), "--levels", "1"]) == 0
    model = tmp / "model"
    shutil.copytree(talking_head.DEMO_MODEL_DIR, model)
    return tmp, data, model


def test_evaluate_writes_the_section(evaluated, capsys):
    tmp, data, model = evaluated
    out = tmp / "eval"
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(tmp / "syncers"),
                     "--model", str(model), "--out", str(out), "--clip-frames", "50"]) == 0, \
        capsys.readouterr().err
    err = capsys.readouterr().err
    assert "against the recording: keypoints r" in err and "targets met" in err
    metrics = json.loads((out / "metrics.json").read_text())
    against = metrics["against_recording"]
    # the grey first frame shows no face: keypoints from the recorded first frame, said so
    assert against["level"] == "rendered" and set(against["summary"]) == {"keypoints"}
    assert "no frontal face found" in against["clips"][0]["notes"][0]
    assert against["summary"]["keypoints"]["recording"]["r_opening"] == pytest.approx(1.0)
    assert "## Against the recording" in (out / "metrics.md").read_text()


def test_evaluate_against_none_and_a_missing_wav(evaluated, capsys, tmp_path):
    tmp, data, model = evaluated
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(tmp / "syncers"),
                     "--model", str(model), "--out", str(out), "--clip-frames", "50",
                     "--against", "none"]) == 0
    assert "against_recording" not in json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    no_wav = tmp_path / "ds"
    shutil.copytree(data, no_wav)
    (no_wav / "test" / "test1.wav").unlink()
    assert cli.main(["evaluate", "--data", str(no_wav), "--syncers", str(tmp / "syncers"),
                     "--model", str(model), "--out", str(out), "--clip-frames", "50"]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "test1.wav: missing" in lines[0] and "--against none" in lines[0]
    with pytest.raises(InputError, match="test1.wav: missing"):
        ar.read_recordings(no_wav, "test")


def test_the_targets_read_the_rendered_rows_and_compare_with_their_references():
    generated = {"r_opening": 0.5, "mean_ratio": 1.3, "p90_ratio": 1.0,
                 "closed_share_ratio": 0.4, "closures_per_second_ratio": 0.6,
                 "r_loudness": 0.3, "lmd": 0.05}
    summary = {"keypoints": {"generated": {k: 0.0 for k in generated}},
               "rendered": {"generated": generated, "recording": {"r_loudness": 0.1},
                            "still": {"lmd": 0.04}}}
    result = ar.targets(summary)
    assert result["space"] == "rendered"
    met = [check["met"] for check in result["checks"]]
    assert met == [True, False, True, False, True, False, False]
    assert result["checks"][-1]["reference"] == 0.04
    # nothing rendered: the keypoint rows; a missing reference is not measured
    result = ar.targets({"keypoints": {"generated": generated}})
    assert result["space"] == "keypoints" and result["checks"][-1]["met"] is None
