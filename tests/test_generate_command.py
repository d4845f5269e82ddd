"""``msync generate`` end to end with a tiny random model: the mp4 (frames, fps, codecs, audio),
``--keypoints-out``, the keypoint-space check, the bundled defaults, the corpus matching and drift
removal a model records (issue 6), and every bad input giving one line and exit 2 (or being
converted)."""
from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
import soundfile
from generator_helpers import tiny_params
from PIL import Image
from tolerance import assert_close

from motion import generate as gen
from motion import model as model_lib
from motion import source, talking_head
from motion.app import cli
from motion.app import generate as app_gen
from motion.generator import TINY
from motion.saved_model import corpus_feature_stats, load_model, save_model
from syncers.data import face, landmark_space
from syncers.data.features import audio_features, feature_config, load_audio, match_features
from syncers.data.phantom import audio as phantom_audio
from syncers.data.phantom.template import fit_to_box
from syncers.data.video import probe, read_video

SECONDS = 1.0          # 25 frames: one rollout bucket and one warp compile for the whole module


def _face_image() -> np.ndarray:
    """A 96×96 uint8 crop of the astronaut's face (the LBP detector finds it)."""
    from skimage import data, transform
    crop = data.astronaut()[10:250, 110:350]
    return (transform.resize(crop, (96, 96), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)


def _write_png16(path, pixels_u16: np.ndarray) -> None:
    """A 16-bit RGB (or gray) PNG, written by hand: PIL cannot write 16-bit RGB."""
    h, w = pixels_u16.shape[:2]
    color_type = 2 if pixels_u16.ndim == 3 else 0
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels_u16)

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Models, images and wavs shared by the module (paths in a dict)."""
    root = tmp_path_factory.mktemp("generate")
    model = model_lib.GeneratorModel(tiny_params(TINY), TINY)
    phantom = save_model(root / "phantom", model, keypoint_space="phantom-v1",
                         features=feature_config("logmel"))
    fomm = save_model(root / "fomm", model, keypoint_space="fomm-vox256",
                      features=feature_config("logmel"))
    landmark = save_model(root / "landmark", model, keypoint_space="landmarks-v1",
                          features=feature_config("logmel"))
    other = save_model(root / "other", model, keypoint_space="mediapipe-v2",
                       features=feature_config("logmel"))
    mfcc40 = save_model(root / "mfcc40", model, keypoint_space="phantom-v1",
                        features={**feature_config("mfcc"), "n_bands": 40})
    pixels = _face_image()
    Image.fromarray(pixels).save(root / "face.png")
    speech = phantom_audio.utterance(SECONDS, seed=1)
    soundfile.write(root / "speech.wav", speech, 16000)
    # 24-bit stereo at 22.05 kHz: resampled and mixed down on load
    import librosa
    resampled = librosa.resample(speech, orig_sr=16000, target_sr=22050)
    soundfile.write(root / "speech24.wav", np.stack([resampled, resampled], 1), 22050,
                    subtype="PCM_24")
    # the same parameters with corpus statistics (of phantom speech at another gain) and a
    # drift-removal window, as the bundled model records them (issue 6)
    corpus = [phantom_audio.utterance(4.0, seed=s) * 0.3 for s in (2, 3)]
    stats = save_model(root / "stats", model, keypoint_space="phantom-v1",
                       features=feature_config("logmel"),
                       feature_stats=corpus_feature_stats([audio_features(c) for c in corpus],
                                                          "two phantom utterances"))
    drift = save_model(root / "drift", model, keypoint_space="phantom-v1",
                       features=feature_config("logmel"), drift_window_s=0.4)
    return {"root": root, "phantom": phantom, "fomm": fomm, "landmark": landmark,
            "other": other, "mfcc40": mfcc40,
            "stats": stats, "drift": drift,
            "face": root / "face.png", "pixels": pixels, "wav": root / "speech.wav",
            "wav24": root / "speech24.wav"}


def _default_crop(path):
    """The crop msync generate makes by default (--crop-scale 1.8)."""
    return face.crop(face.load_image(path), margin=(talking_head.DEFAULT_CROP_SCALE - 1) / 2)


def _run(capsys, *argv):
    code = cli.main(["generate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line_error(code, err):
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("msync: error: "), err
    assert "Traceback" not in err
    return err


def test_video_has_a_frame_per_40_ms_the_audio_and_moves(media, tmp_path, capsys):
    out, kp_out = tmp_path / "sub" / "x.mp4", tmp_path / "kp.npz"
    code, stdout, err = _run(capsys, "--image", media["face"], "--audio", media["wav24"],
                             "--model", media["phantom"], "--out", out, "--keypoints-out", kp_out)
    assert code == 0, err
    assert "25 frames" in stdout and "frames/s" in stdout and stdout.count("\n") == 1
    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.fps) == ("h264", "aac", 25.0)
    assert (info.width, info.height) == (256, 256)
    assert abs(info.duration - SECONDS) < 0.05
    frames = read_video(out)
    assert len(frames) == 25
    # the tiny random model moves the keypoints, so the warp moves pixels
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.5
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.mp4"]

    with np.load(kp_out, allow_pickle=False) as saved:
        keypoints, fps, space = saved["keypoints"], saved["fps"], str(saved["keypoint_space"])
    assert keypoints.shape == (25, 10, 6) and fps == 25.0 and space == "phantom-v1"
    # frame 0 is x0: the template on the detected face box
    crop = _default_crop(media["face"])
    np.testing.assert_allclose(keypoints[0], fit_to_box(crop.face_box), atol=1e-5)
    assert np.abs(np.diff(keypoints, axis=0)).max() > 1e-3


def test_the_mp4_carries_the_inputs_own_audio(media, tmp_path, capsys):
    """A 22.05 kHz stereo input keeps its rate and channels in the mp4 (the 16 kHz mono copy
    is only what the model hears)."""
    out = tmp_path / "x.mp4"
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav24"], "--model",
                        media["phantom"], "--out", out)
    assert code == 0, err
    info = probe(out)
    assert (info.audio_codec, info.audio_sample_rate, info.audio_channels) == \
        ("aac", 22050, "stereo")
    assert abs(info.duration - SECONDS) < 0.06


def test_crop_scale_and_size(media, tmp_path, capsys):
    out = tmp_path / "big.mp4"
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["landmark"], "--out", out, "--size", "512", "--crop-scale", "2.5")
    assert code == 0, err
    assert (probe(out).width, probe(out).height) == (512, 512)
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["landmark"], "--out", out, "--crop-scale", "9")
    assert "--crop-scale: must be 1.2 to 4" in _one_line_error(code, err)
    # the model's frame: a training crop (face box 1/1.5 of the side) is the identity, a crop
    # twice as loose doubles the coordinates the model sees
    third = 1 / face.TRAINING_CROP_SCALE
    assert source.model_frame_scale((-third, -third, third, third)) == pytest.approx(1.0)
    assert source.model_frame_scale((-third / 2, -third / 2, third / 2, third / 2)) == \
        pytest.approx(2.0)


def test_landmark_model_starts_from_the_photos_landmarks(media, tmp_path, capsys):
    """A landmarks-v1 model's x0 is the landmark-space encoding of dlib's 68 points on the
    crop; with --no-crop on an image with no face, of the mean face in the assumed box."""
    kp_out = tmp_path / "kp.npz"
    code, stdout, err = _run(capsys, "--image", media["face"], "--audio", media["wav"],
                             "--model", media["landmark"], "--out", tmp_path / "x.mp4",
                             "--keypoints-out", kp_out)
    assert code == 0, err
    assert "landmarks-v1 model" in stdout
    assert "mesh renderer" in stdout                       # the landmark space's default
    keypoints = np.load(kp_out)["keypoints"]
    crop = _default_crop(media["face"])
    points = source.source_landmarks(crop)
    assert_close(keypoints[0], landmark_space.encode(points), rel=1e-5)
    assert np.abs(points[36:48].mean(axis=0)[1]) < 0.5               # real eyes, found on it
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(flat)
    code, _, err = _run(capsys, "--image", flat, "--audio", media["wav"], "--model",
                        media["landmark"], "--out", tmp_path / "y.mp4", "--keypoints-out", kp_out,
                        "--no-crop")
    assert code == 0, err
    assert_close(np.load(kp_out)["keypoints"][0],
                 landmark_space.encode(landmark_space.template(face.DEFAULT_FACE_BOX)), rel=1e-5)


def test_phantom_motion_scales_with_the_face(media, tmp_path, capsys):
    """A phantom model runs in the corpus's face box; its motion is mapped onto the face by a
    similarity, so relative motion is the same whatever the face's size in the crop."""
    runs = {}
    for flag in ((), ("--no-crop",)):
        kp_out = tmp_path / f"kp{len(flag)}.npz"
        code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                            media["phantom"], "--out", tmp_path / "x.mp4", "--keypoints-out",
                            kp_out, *flag)
        assert code == 0, err
        runs[flag] = np.load(kp_out)["keypoints"]
    a, b = runs[()], runs[("--no-crop",)]
    span = [np.ptp(k[0, :, 0]) for k in (a, b)]          # face width in the crop
    rel = [(k[..., :2] - k[:1, :, :2]) / s for k, s in zip((a, b), span)]
    np.testing.assert_allclose(rel[0], rel[1], atol=1e-4)
    np.testing.assert_allclose(a[..., 2:], b[..., 2:], atol=1e-5)   # jacobians unchanged


@pytest.mark.parametrize("kind", ["cmyk.jpg", "rgba.png", "rgb16.png", "gray16.png"])
def test_unusual_image_formats_are_converted(media, tmp_path, capsys, kind):
    pixels = media["pixels"]
    path = tmp_path / kind
    if kind == "cmyk.jpg":
        Image.fromarray(pixels).convert("CMYK").save(path, quality=95)
    elif kind == "rgba.png":
        alpha = np.full(pixels.shape[:2] + (1,), 255, np.uint8)
        alpha[:8] = 0                                       # a transparent strip at the top
        Image.fromarray(np.concatenate([pixels, alpha], -1)).save(path)
    elif kind == "rgb16.png":
        _write_png16(path, pixels.astype(np.uint16) * 257)
    else:
        _write_png16(path, pixels.mean(-1).astype(np.uint16) * 257)
    image = face.load_image(path)
    assert image.shape == (96, 96, 3) and image.dtype == np.float32
    expected = pixels / 255.0 if kind != "gray16.png" else np.repeat(
        pixels.mean(-1, keepdims=True).astype(np.uint16) / 255.0, 3, -1)
    if kind == "rgba.png":
        assert np.allclose(image[:8], 1.0)                  # composited over white
        image, expected = image[8:], expected[8:]
    if kind == "cmyk.jpg":                                 # lossy: compare on average
        assert np.abs(image - expected).mean() < 0.01
    else:
        np.testing.assert_allclose(image, expected, atol=1e-3)
    code, _, err = _run(capsys, "--image", path, "--audio", media["wav"], "--model",
                        media["phantom"], "--out", tmp_path / "x.mp4")
    assert code == 0, err


def _no_face(path):
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(path)


def _bad_inputs():
    """(name, flag, make(path), message regex) for every bad file."""
    rng = np.random.default_rng(0)
    return [
        ("missing.png", "--image", None, "missing.png: no such image file"),
        ("missing.wav", "--audio", None, "missing.wav: no such file"),
        ("zero.wav", "--audio", lambda p: p.write_bytes(b""), r"zero.wav: the file is empty"),
        ("empty.wav", "--audio", lambda p: soundfile.write(p, np.zeros(0, np.float32), 16000),
         "empty.wav: the audio is empty"),
        ("short.wav", "--audio",
         lambda p: soundfile.write(p, 0.1 * rng.standard_normal(3200).astype(np.float32), 16000),
         r"short.wav: the audio is 0.20 s long; msync generate needs at least 0.5 s"),
        ("text.wav", "--audio", lambda p: p.write_text("not audio\n"),
         "text.wav: cannot decode audio"),
        ("one_hz.wav", "--audio", lambda p: soundfile.write(p, np.zeros(100, np.float32), 1),
         "one_hz.wav: sample rate 1 Hz is outside the 4000-768000 Hz msync reads"),
        ("big.png", "--image", lambda p: Image.new("1", (10000, 5001)).save(p),
         "big.png: image is 10000x5001 = 50,010,000 pixels, more than the 50,000,000"),
        ("noface.png", "--image", _no_face, "noface.png: no frontal face found.*--no-crop"),
        ("one.png", "--image", lambda p: Image.new("RGB", (1, 1)).save(p),
         "one.png: image is 1x1 pixels; need at least 16x16"),
        ("text.png", "--image", lambda p: p.write_text("not an image\n"),
         "text.png: not a readable image"),
        ("cut.png", "--image",
         lambda p: p.write_bytes(_png_bytes()[:300]), "cut.png: not a readable image"),
        ("folder.png", "--image", lambda p: p.mkdir(), "folder.png: is a directory"),
    ]


def _png_bytes() -> bytes:
    import io
    buffer = io.BytesIO()
    Image.fromarray(_face_image()).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("name,flag,make,message", _bad_inputs(), ids=lambda v: str(v)[:12])
def test_bad_input_is_one_line_and_exit_2(media, tmp_path, capsys, name, flag, make, message):
    bad = tmp_path / name
    if make is not None:
        make(bad)
    inputs = {"--image": media["face"], "--audio": media["wav"], flag: bad}
    out = tmp_path / "x.mp4"
    code, stdout, err = _run(capsys, *[v for kv in inputs.items() for v in kv],
                             "--model", media["phantom"], "--out", out)
    assert re.search(message, _one_line_error(code, err)), err
    assert not out.exists() and stdout == ""


def test_no_crop_animates_an_image_without_a_face(media, tmp_path, capsys):
    _no_face(tmp_path / "noface.png")
    code, _, err = _run(capsys, "--image", tmp_path / "noface.png", "--audio", media["wav"],
                        "--model", media["phantom"], "--out", tmp_path / "x.mp4", "--no-crop")
    assert code == 0, err


@pytest.mark.parametrize("model,extra,message", [
    ("phantom", ("--fomm-checkpoint", "vox.pth.tar"), "phantom-v1.*drop --fomm-checkpoint"),
    ("phantom", ("--renderer", "fomm"), "--renderer fomm needs --fomm-checkpoint"),
    ("fomm", (), "FOMM keypoints \\(fomm-vox256\\).*pass --fomm-checkpoint"),
    ("fomm", ("--renderer", "warp", "--fomm-checkpoint", "vox.pth.tar"),
     "FOMM keypoints.*drop --renderer warp"),
    ("other", (), "unknown keypoint space 'mediapipe-v2'"),
    ("mfcc40", (), "audio features"),
    ("phantom", ("--renderer", "mesh"), "mesh renderer draws landmarks-v1.*--renderer warp"),
    ("landmark", ("--renderer", "fomm", "--fomm-checkpoint", "vox.pth.tar"),
     "landmarks-v1 keypoints; FOMM cannot draw them"),
])
def test_model_and_renderer_must_share_a_keypoint_space(media, tmp_path, capsys, model, extra,
                                                        message):
    out = tmp_path / "x.mp4"
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media[model], "--out", out, *extra)
    assert re.search(message, _one_line_error(code, err)), err
    assert not out.exists()


def test_bad_output_names(media, tmp_path, capsys):
    common = ("--image", media["face"], "--audio", media["wav"], "--model", media["phantom"])
    code, _, err = _run(capsys, *common, "--out", tmp_path / "x.avi")
    assert "--out must name a .mp4 file" in _one_line_error(code, err)
    (tmp_path / "d.mp4").mkdir()
    code, _, err = _run(capsys, *common, "--out", tmp_path / "d.mp4")
    assert "is a directory" in _one_line_error(code, err)
    code, _, err = _run(capsys, *common, "--out", tmp_path / "x.mp4", "--keypoints-out",
                        tmp_path / "kp.txt")
    assert "--keypoints-out must name a .npz file" in _one_line_error(code, err)


def test_outputs_never_overwrite_inputs_or_unrelated_files(media, tmp_path, capsys):
    """--out equal to an input is refused before any work; the output is written under a
    unique temporary name, so a user's own ``<stem>.partial.mp4`` is left alone."""
    video = tmp_path / "v.mp4"
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", video)
    assert code == 0, err
    before = video.read_bytes()
    code, _, err = _run(capsys, "--image", media["face"], "--audio", video, "--model",
                        media["phantom"], "--out", video)
    assert "--out would overwrite an input" in _one_line_error(code, err)
    assert video.read_bytes() == before
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", tmp_path / "k.mp4", "--keypoints-out",
                        media["face"].with_suffix(".npz"))
    assert code == 0, err
    mine = tmp_path / "p.partial.mp4"
    mine.write_bytes(b"the user's own file")
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", tmp_path / "p.mp4")
    assert code == 0, err
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.mp4", "p.mp4", "p.partial.mp4",
                                                          "v.mp4"]


def test_an_unwritable_folder_is_refused_before_any_work(media, tmp_path, capsys, monkeypatch):
    from syncers.run import outputs

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    # root may write anywhere: the check's probe file is refused as in a read-only folder
    monkeypatch.setattr(outputs.tempfile, "mkstemp", refused)
    code, stdout, err = _run(capsys, "--image", media["face"], "--audio", media["wav"],
                             "--model", media["phantom"], "--out", tmp_path / "ro" / "x.mp4")
    assert "the folder for --out is not writable" in _one_line_error(code, err)
    assert stdout == "" and not (tmp_path / "ro" / "x.mp4").exists()


def test_missing_bundled_model_says_to_pass_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(talking_head, "DEMO_MODEL_DIR", tmp_path / "nothing")
    code, _, err = _run(capsys, "--out", tmp_path / "x.mp4")
    err = _one_line_error(code, err)
    assert "no bundled demo model is installed" in err and "--model" in err


def test_bundled_face_and_speech(media, monkeypatch, tmp_path, capsys):
    """``msync generate --out x.mp4``: the astronaut and the bundled recording (real speech,
    its own audio in the mp4)."""
    speech = load_audio(app_gen.BUNDLED_SPEECH)
    assert 5.5 < speech.size / 16000 < 6.5 and np.abs(speech).max() > 0.5
    monkeypatch.setattr(talking_head, "DEMO_MODEL_DIR", media["phantom"])
    short = tmp_path / "short.wav"               # keep the test to one bucket
    soundfile.write(short, speech[:int(SECONDS * 16000)], 16000)
    monkeypatch.setattr(app_gen, "BUNDLED_SPEECH", short)
    code, stdout, err = _run(capsys, "--out", tmp_path / "x.mp4")
    assert code == 0, err
    assert "25 frames" in stdout
    assert len(read_video(tmp_path / "x.mp4")) == 25


def test_fomm_renderer_with_a_fomm_space_model(media, monkeypatch, tmp_path, capsys):
    """With a FOMM checkpoint, x0 comes from the KP detector and FOMM draws the frames (a
    reduced random-weight FOMM stands in for vox-256)."""
    from test_fomm_model import small_model

    from render.keypoints import join

    fomm = small_model()
    monkeypatch.setattr(app_gen, "load_fomm", lambda path, *a, **k: fomm)
    kp_out = tmp_path / "kp.npz"
    code, stdout, err = _run(capsys, "--image", media["face"], "--audio", media["wav"],
                             "--model", media["fomm"], "--fomm-checkpoint", "vox.pth.tar",
                             "--out", tmp_path / "x.mp4", "--keypoints-out", kp_out)
    assert code == 0, err
    assert "fomm renderer" in stdout
    crop = _default_crop(media["face"])
    x0 = join(fomm.keypoints(crop.image[None]))[0]
    keypoints = np.load(kp_out)["keypoints"]
    np.testing.assert_allclose(keypoints[0], x0, atol=1e-6)
    assert len(read_video(tmp_path / "x.mp4")) == 25



@pytest.mark.parametrize("flag,value", [("--head-scale", "nan"), ("--lip-scale", "-1"),
                                        ("--head-scale", "inf"), ("--lip-scale", "10.5")])
def test_motion_scales_must_be_finite_and_bounded(media, tmp_path, capsys, flag, value):
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", tmp_path / "x.mp4", flag, value)
    assert f"{flag} must be a number from 0 to 10 " in _one_line_error(code, err)


def _keypoints(capsys, media, tmp_path, model, *flags):
    kp_out = tmp_path / f"kp{len(list(tmp_path.iterdir()))}.npz"
    code, stdout, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                             media[model], "--out", tmp_path / "x.mp4", "--keypoints-out",
                             kp_out, *flags)
    assert code == 0, err
    return np.load(kp_out)["keypoints"], stdout


def _expected(media, model_name, features_fn=lambda f: f, keypoints_fn=lambda k: k):
    """What generate should give, computed from the library functions in the model's space."""
    model, _ = load_model(media[model_name])
    x0, to_image = source.source_keypoints(_default_crop(media["face"]), None)
    features = features_fn(audio_features(load_audio(media["wav"])))
    return to_image(keypoints_fn(gen.generate(model, x0, features)))


def test_audio_is_matched_to_the_models_corpus_when_it_records_one(media, tmp_path, capsys):
    """A model without feature_stats generates as before; one with them matches the features
    (per band, onto its corpus's quantiles) unless --audio-normalization none."""
    before = _expected(media, "phantom")
    old, stdout = _keypoints(capsys, media, tmp_path, "phantom")
    assert_close(old, before, rel=2e-6)                # frames up to ~6.5 (tolerance.py)
    assert "audio as is" in stdout and "drift window 0 s" in stdout
    quantiles = np.asarray(load_model(media["stats"])[1]["feature_stats"]["quantiles"])
    matched, stdout = _keypoints(capsys, media, tmp_path, "stats")
    assert_close(matched, _expected(media, "stats", lambda f: match_features(f, quantiles)),
                 rel=2e-6)
    assert "audio matched to its corpus" in stdout
    assert np.abs(matched - old).max() > 1e-4          # the matching changed the motion
    unmatched, _ = _keypoints(capsys, media, tmp_path, "stats", "--audio-normalization", "none")
    assert_close(unmatched, old, rel=2e-6)           # atol=1e-6 was 2 ulps at 6.5


def test_drift_window_defaults_to_the_models_and_the_flag_overrides_it(media, tmp_path, capsys):
    raw = _expected(media, "drift")
    default, stdout = _keypoints(capsys, media, tmp_path, "drift")
    assert "drift window 0.4 s" in stdout
    np.testing.assert_allclose(default, gen.remove_drift(raw, 10), atol=1e-5)   # 0.4 s × 25
    np.testing.assert_allclose(default[0], raw[0], atol=1e-6)                     # still x0
    off, _ = _keypoints(capsys, media, tmp_path, "drift", "--drift-window", "0")
    assert_close(off, raw, rel=2e-6)
    wider, _ = _keypoints(capsys, media, tmp_path, "phantom", "--drift-window", "0.6")
    np.testing.assert_allclose(wider, gen.remove_drift(raw, 15), atol=1e-5)


@pytest.mark.parametrize("flags,message", [
    (("--audio-normalization", "loud"), "--audio-normalization must be one of corpus, none"),
    (("--drift-window", "-1"), "--drift-window must be a number of seconds from 0 to 600"),
    (("--drift-window", "inf"), "--drift-window must be a number of seconds from 0 to 600"),
    (("--drift-window", "601"), "--drift-window must be a number of seconds from 0 to 600"),
    (("--audio-normalization", "corpus"), "records no feature_stats"),
])
def test_bad_normalization_flags_give_one_line_and_exit_2(media, tmp_path, capsys, flags,
                                                          message):
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", tmp_path / "x.mp4", *flags)
    assert message in _one_line_error(code, err)
    assert not (tmp_path / "x.mp4").exists()


def test_shipped_demo_model_is_a_small_real_speech_model():
    """The bundled model loads, is in the landmark keypoint space with log-mel features, says
    how to reproduce it, records a long-rollout check that holds, and stays a few MB."""
    from motion.saved_model import load_model, long_rollout_warning
    model, info = load_model(talking_head.DEMO_MODEL_DIR)
    assert info["keypoint_space"] == "landmarks-v1" and info["features"]["kind"] == "logmel"
    assert any("configs/generator-real.yaml" in line for line in info["recipe"])
    assert "drift_window_s" not in info
    assert info["long_horizon"]["verdict"]["drifts"] is False
    assert long_rollout_warning(talking_head.DEMO_MODEL_DIR, info, "demo") is None
    size = sum(p.stat().st_size for p in talking_head.DEMO_MODEL_DIR.iterdir())
    assert size < 10 * 2 ** 20
    assert model.config.d_model == 128


def test_warnings_name_unsafe_scales_and_models_whose_long_rollouts_are_unknown_or_drift(
        media, tmp_path, capsys):
    """Guards on the default path: one warning line each, after every input was accepted,
    and the video is written anyway."""
    out = tmp_path / "w.mp4"
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", out, "--head-scale", "3", "--lip-scale", "2")
    assert code == 0 and out.is_file(), err
    lines = err.strip().splitlines()
    warnings = [line for line in lines if line.startswith("msync: warning: ")]
    assert warnings == [
        "msync: warning: --head-scale: 3 is outside the safe range 0 to 2 (1 = as trained): "
        "the motion may leave the face's natural range; going on",
        f"msync: warning: {media['phantom']}: no long-rollout check is recorded for this model "
        "(step 0): its motion may drift over long audio; `msync evaluate --model "
        f"{media['phantom']} --data DATA --syncers SYNCERS` measures it and records the result"]
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["drift"], "--out", out)
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if line.startswith("msync: warning: ")]
    assert warning.startswith(f"msync: warning: {media['drift']}: this model's long rollouts "
                              "drift: it records drift_window_s = 0.4 s") and \
        "msync evaluate --model" in warning
    # bad input stays one line: the warnings come only once the inputs are accepted
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--out", out, "--head-scale", "3", "--crop-scale", "9")
    _one_line_error(code, err)


def test_landmark_motion_is_carried_onto_the_photo_relatively():
    """A landmarks-v1 model runs from the mean face; its motion reaches the photo's keypoints by
    FOMM's relative rule, so the photo keeps its own shape and only the motion is the model's."""
    rng = np.random.default_rng(0)
    source_kp = landmark_space.encode(landmark_space.template((-0.5, -0.6, 0.4, 0.5))
                                      + rng.normal(0, 0.01, (68, 2)))
    mean_kp = landmark_space.encode(landmark_space.mean_face())
    start, to_image = source.relative_transfer(source_kp, mean_kp, 2.0)
    assert_close(start, mean_kp, rel=1e-6)
    assert_close(to_image(start), source_kp / 2, rel=1e-5)       # no motion: the photo itself
    moved = np.array(start)
    moved[:, 0] += 0.1                                            # the head moves right
    moved[7, 2:] = [1.0, 0.0, 0.0, 1.5]                           # the upper lip stretches
    out = to_image(moved[None])[0] * 2
    assert_close(out[:, 0] - source_kp[:, 0], np.full(10, 0.1), rel=1e-5)
    want_jacobian = np.diag([1.0, 1.5]) @ np.linalg.inv(mean_kp[7, 2:].reshape(2, 2)) \
        @ source_kp[7, 2:].reshape(2, 2)
    assert_close(out[7, 2:].reshape(2, 2), want_jacobian, rel=1e-5)


def test_keypoints_renders_a_clips_motion_moved_onto_the_source(media, tmp_path, capsys):
    """--keypoints draws given keypoints (a dataset clip) instead of generating: frame 0 is the
    source's x0 and every later frame keeps the clip's offsets from its own first frame; the
    drift window of the model is not applied to recorded motion."""
    rng = np.random.default_rng(0)
    clip = np.tile(fit_to_box((-0.3, -0.35, 0.3, 0.45)), (int(SECONDS * 25) + 5, 1, 1))
    clip[..., :2] += np.cumsum(rng.normal(0, 0.004, clip[..., :2].shape), axis=0)
    np.savez(tmp_path / "clip.npz", keypoints=clip.astype(np.float32))
    out, kp_out = tmp_path / "truth.mp4", tmp_path / "truth.npz"
    code, stdout, err = _run(capsys, "--image", media["face"], "--audio", media["wav"],
                             "--model", media["drift"], "--keypoints", tmp_path / "clip.npz",
                             "--out", out, "--keypoints-out", kp_out)
    assert code == 0, err
    assert "keypoints of" in stdout and "drift window 0 s" in stdout
    assert len(read_video(out)) == 25
    with np.load(kp_out) as saved:
        drawn = saved["keypoints"]
    crop = _default_crop(media["face"])
    assert_close(drawn[0], fit_to_box(crop.face_box), rel=1e-5)
    # the phantom map scales positions uniformly: offsets keep their directions and ratios
    offsets, recorded = drawn[1:, :, :2] - drawn[:1, :, :2], clip[1:25, :, :2] - clip[:1, :, :2]
    scale = np.linalg.norm(offsets) / np.linalg.norm(recorded)
    assert_close(offsets, scale * recorded, rel=1e-4)


def test_move_onto_source_keeps_offsets_and_relative_jacobians():
    rng = np.random.default_rng(1)
    clip = rng.normal(0, 0.3, (6, 10, 6)).astype(np.float32)
    x0 = rng.normal(0, 0.3, (10, 6)).astype(np.float32)
    moved = app_gen.move_onto_source(clip, x0)
    assert_close(moved[0], x0, rel=1e-5)
    assert_close(moved[:, :, :2] - x0[:, :2], clip[:, :, :2] - clip[:1, :, :2], rel=1e-5)
    jac = lambda kp: kp[..., 2:].reshape(*kp.shape[:-1], 2, 2)
    assert_close(jac(moved)[3], jac(clip)[3] @ np.linalg.inv(jac(clip)[0]) @ jac(x0), rel=1e-4)


@pytest.mark.parametrize("content,extra,message", [
    ({"other": np.zeros((30, 10, 6))}, (), "the npz holds no 'keypoints' array"),
    ({"keypoints": np.zeros((30, 9, 6))}, (), "keypoints must be [T, 10, 6]"),
    ({"keypoints": np.full((30, 10, 6), np.nan)}, (), "NaN or infinite"),
    ({"keypoints": np.zeros((5, 10, 6))}, (), "5 frames (0.20 s) do not cover the audio's 25"),
    ({"keypoints": np.zeros((30, 10, 6))}, ("--head-scale", "2"), "nothing is generated"),
])
def test_bad_keypoints_are_one_line(media, tmp_path, capsys, content, extra, message):
    np.savez(tmp_path / "kp.npz", **content)
    code, _, err = _run(capsys, "--image", media["face"], "--audio", media["wav"], "--model",
                        media["phantom"], "--keypoints", tmp_path / "kp.npz",
                        "--out", tmp_path / "x.mp4", *extra)
    assert message in _one_line_error(code, err)
    assert not (tmp_path / "x.mp4").exists()
