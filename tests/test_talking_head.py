"""The one generation pipeline (``motion.talking_head``): the library call, ``msync generate``
and the page's Generate tab give the same keypoints and frames; the streamer built from the same
model and options gives the same keypoints, with the content mouth too; the options' one set of
ranges; the renderer
interface (``render.renderer``)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile
from generator_helpers import tiny_params
from PIL import Image
from tolerance import assert_close

from motion import blink, expression, lips, talking_head
from motion.app import cli, ui
from motion.app import generate as app_gen
from motion.articulation import apply
from motion.generate import generate, remove_drift
from motion.generator import TINY
from motion.model import GeneratorModel
from motion.saved_model import save_model
from motion.talking_head import GenerationOptions
from render import mesh, warp
from render import renderer as render_api
from syncers.data import content, face, landmark_space
from syncers.data.features import audio_features, feature_config, load_audio
from syncers.data.layout import PHANTOM_SPACE
from syncers.data.phantom import audio as phantom_audio
from syncers.run.errors import InputError

SECONDS = 1.2                 # 30 frames: one rollout bucket, two warp chunks


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("talking_head")
    model = GeneratorModel(tiny_params(TINY), TINY)
    save_model(root / "phantom", model, keypoint_space=PHANTOM_SPACE,
               features=feature_config("logmel"), drift_window_s=0.4)
    image = np.random.default_rng(0).integers(0, 256, size=(80, 96, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "photo.png")
    soundfile.write(root / "speech.wav", phantom_audio.utterance(SECONDS, seed=3), 16000)
    return {"model": root / "phantom", "photo": root / "photo.png", "wav": root / "speech.wav",
            "root": root}


@pytest.fixture
def captured_frames(monkeypatch):
    """Every frame chunk ``msync generate`` and the page write, as rendered (before H.264)."""
    frames = []
    real = app_gen.write_frames

    def write_frames(path, chunks, *args):
        chunks = list(chunks)
        frames.append(np.concatenate(chunks))
        real(path, iter(chunks), *args)

    monkeypatch.setattr(app_gen, "write_frames", write_frames)
    return frames


def _library(media, options):
    model = talking_head.load(media["model"])
    options = talking_head.resolve(model, options)
    image = face.load_image(media["photo"])
    samples = load_audio(media["wav"])
    source = talking_head.prepare(model, image, options)
    keypoints = talking_head.keypoints(model, source, samples, options)
    frames = np.concatenate(list(talking_head.frames(source, keypoints, options)))
    return model, source, options, samples, keypoints, frames


def test_library_cli_and_page_give_the_same_keypoints_and_frames(media, captured_frames,
                                                                  tmp_path, capsys):
    options = GenerationOptions(head_scale=1.3, lip_scale=0.8, crop=False)
    _, _, resolved, _, keypoints, frames = _library(media, options)
    assert keypoints.shape == (30, 10, 6) and frames.shape == (30, 256, 256, 3)
    assert resolved.renderer == "warp" and resolved.drift_window_s == 0.4

    kp_out = tmp_path / "cli.npz"
    code = cli.main(["generate", "--image", str(media["photo"]), "--audio", str(media["wav"]),
                     "--model", str(media["model"]), "--out", str(tmp_path / "cli.mp4"),
                     "--keypoints-out", str(kp_out), "--no-crop", "--head-scale", "1.3",
                     "--lip-scale", "0.8"])
    assert code == 0, capsys.readouterr().err
    with np.load(kp_out, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["keypoints"], keypoints)
    np.testing.assert_array_equal(captured_frames[-1], frames)

    config = ui.page_config([str(media["model"])], [], 50.0, tmp_path / "page")
    label = next(name for name in config.models
                 if name not in (ui.BUNDLED, ui.BUNDLED_LOW_LATENCY))
    video, files, message = ui.generate_video(config, str(media["photo"]), str(media["wav"]),
                                              label, 1.3, 0.8, ui.RENDERERS[0], True)
    assert message.startswith("Done: 30 frames")
    with np.load(files[1], allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["keypoints"], keypoints)
    np.testing.assert_array_equal(captured_frames[-1], frames)


def test_the_library_is_the_generator_then_articulation_and_drift_removal(media):
    """Without corpus statistics or articulation, the pipeline's keypoints are the generator's
    with the model's drift window removed, mapped onto the crop."""
    model, source, options, samples, keypoints, _ = _library(media, GenerationOptions(crop=False))
    raw = generate(model.generator, source.x0, audio_features(samples))
    expected = source.to_image(remove_drift(raw, round(0.4 * 25)))
    assert_close(keypoints, expected, rel=1e-6)


def test_the_streamer_draws_what_the_library_draws(media):
    """The same model, source and options: the streamed keypoints are the offline ones (the
    drift window included), and the streamed frames are the renderer's (uint8)."""
    model, source, options, samples, keypoints, frames = _library(
        media, GenerationOptions(head_scale=0.7, crop=False))
    streamer = talking_head.streamer(model, source, options)
    out = []
    for start in range(0, samples.size, 3000):
        out += streamer.push(samples[start:start + 3000])
    out += streamer.close()
    streamed = np.stack([f.keypoints for f in out])
    assert_close(source.to_image(streamed), keypoints, rel=1e-5)
    images = np.stack([f.image for f in out]).astype(np.float32) / 255.0
    # frames of equal keypoints up to 1e-5: at most a rounding step apart, almost all equal
    assert np.abs(images - frames).max() <= 2 / 255
    assert streamer.size == source.size == 256


def test_stream_and_generate_crop_alike(media):
    """One source for both paths: the same crop box and x0 from the same options."""
    model = talking_head.load(media["model"])
    image = face.load_image(media["photo"])
    options = talking_head.resolve(model, GenerationOptions(crop=False, size=512))
    source = talking_head.prepare(model, image, options)
    streamer = talking_head.streamer(model, source, options, draw=False)
    assert streamer.crop.box == source.crop.box and streamer.size == 512
    np.testing.assert_array_equal(streamer.x0, source.x0)


@pytest.mark.parametrize("field, value, message", [
    ("head_scale", -0.1, "--head-scale must be a number from 0 to 10"),
    ("lip_scale", 10.5, "--lip-scale must be a number from 0 to 10"),
    ("head_scale", float("nan"), "--head-scale must be a number from 0 to 10"),
    ("audio_normalization", "loud", "--audio-normalization must be one of corpus, none"),
    ("drift_window_s", 601.0, "--drift-window must be a number of seconds from 0 to 600"),
    ("drift_window_s", -1.0, "--drift-window must be a number of seconds from 0 to 600"),
    ("renderer", "ascii", "--renderer must be one of mesh, warp, fomm"),
    ("crop_scale", 1.1, "must be 1.2 to 4"),
    ("size", 300, "--size must be one of 256, 512"),
    ("mouth", "jaw", "--mouth must be one of content, loudness"),
])
def test_options_have_one_set_of_ranges(field, value, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        GenerationOptions(**{field: value}).validate()
    assert GenerationOptions(head_scale=10.0, lip_scale=0.0, drift_window_s=600.0).validate()


@pytest.mark.parametrize("command", ["generate", "stream"])
@pytest.mark.parametrize("flag, value, message", [
    ("--head-scale", "11", "--head-scale must be a number from 0 to 10"),
    ("--drift-window", "700", "--drift-window must be a number of seconds from 0 to 600"),
    ("--crop-scale", "9", "must be 1.2 to 4"),
])
def test_generate_and_stream_refuse_the_same_values(command, flag, value, message, media,
                                                    tmp_path, capsys):
    code = cli.main([command, "--image", str(media["photo"]), "--audio", str(media["wav"]),
                     "--out", str(tmp_path / "x.mp4"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.mp4").exists()


def test_generate_and_stream_share_their_generation_options():
    parser = cli.build_parser()
    shared = ("--model", "--renderer", "--head-scale", "--lip-scale", "--mouth",
              "--audio-normalization",
              "--drift-window", "--no-crop", "--crop-scale", "--size")
    helps = {}
    for command in ("generate", "stream"):
        sub = parser._subparsers._group_actions[0].choices[command]
        options = {o: a for a in sub._actions for o in a.option_strings}
        helps[command] = {flag: options[flag].help for flag in shared if flag != "--renderer"}
    assert helps["generate"] == helps["stream"]


def test_one_renderer_interface_draws_what_each_renderer_draws():
    rng = np.random.default_rng(1)
    image = rng.uniform(size=(64, 64, 3)).astype(np.float32)
    points = landmark_space.template((-0.4, -0.4, 0.4, 0.4))
    kp_source = landmark_space.encode(points)
    driving = kp_source + rng.normal(scale=0.01, size=(5, 10, 6)).astype(np.float32)
    warped = render_api.prepare("warp", image, kp_source, chunk=2)
    assert warped.kind == "warp" and warped.size == 64
    assert [len(c) for c in warped.chunks(driving)] == [2, 2, 1]
    # the same frames as the warp's own entry point (another chunk size: a few ulps apart)
    assert_close(warped.render(driving), warp.render(image, kp_source, driving), rel=1e-5)
    meshed = render_api.prepare("mesh", image, kp_source, points, chunk=3)
    np.testing.assert_array_equal(
        meshed.render(driving), mesh.render(mesh.prepare(image, points), kp_source, driving,
                                            mesh.MeshConfig(chunk=3)))
    assert meshed.render(driving[:0]).shape == (0, 64, 64, 3)
    with pytest.raises(ValueError, match="needs the source's landmarks"):
        render_api.prepare("mesh", image, kp_source)
    with pytest.raises(ValueError, match="needs the loaded FOMM model"):
        render_api.prepare("fomm", image, kp_source)
    with pytest.raises(ValueError, match="unknown renderer"):
        render_api.prepare("ascii", image, kp_source)
    with pytest.raises(ValueError, match=r"keypoints must be \[T, 10, 6\]"):
        warped.render(driving[:, :5])


def _lip_model(inputs="both", before=6, after=4, n_shapes=2):
    """A valid ``motion.lips.LipModel`` with random weights (the values of a fit do not matter
    to the pipeline's plumbing)."""
    rng = np.random.default_rng(0)
    width = (before + after + 1) * lips.n_channels(inputs)
    sorted_normal = lambda: np.sort(rng.normal(size=(n_shapes, 11)), axis=1).astype(np.float32)
    return lips.LipModel(inputs, before, after, np.zeros(width, np.float32),
                         np.ones(width, np.float32),
                         rng.normal(scale=0.3, size=(width, n_shapes)).astype(np.float32),
                         np.zeros(n_shapes, np.float32), sorted_normal(), sorted_normal(),
                         rng.normal(scale=0.02, size=(n_shapes, 40)).astype(np.float32))


@pytest.fixture(scope="module")
def content_model():
    """The bundled model (landmarks-v1, with its articulation) on the tiny generator, with a
    lip model: what the content mouth is added to."""
    bundled = talking_head.load(None)
    return dataclasses.replace(bundled, generator=GeneratorModel(tiny_params(TINY), TINY),
                               lips=_lip_model())


@pytest.mark.parametrize("chunk, inputs", [(3000, "both"), (641, "content"), (7777, "prosody")])
def test_the_streamed_content_mouth_is_the_offline_one(content_model, chunk, inputs):
    """The content mouth (``motion.lips``, content decoded from the samples, prosody from the
    unmatched rows) streams exactly: the streamed keypoints equal ``talking_head.keypoints``
    before its blinks (a StreamFrame's keypoints are the motion; the stream's blinks go to its
    renderer, the offline schedule's: tests/test_blink.py)."""
    model = dataclasses.replace(content_model, lips=_lip_model(inputs))
    options = talking_head.resolve(model, GenerationOptions(crop=False, lip_scale=0.8,
                                                            audio_normalization="none"))
    assert options.mouth == "content"
    image = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
    source = talking_head.prepare(model, image, options)
    samples = phantom_audio.utterance(3.0, seed=5)
    keypoints = talking_head.keypoints(model, source, samples, options)
    # the pipeline is the generator, kept within the expression space, then the lip model's
    # offsets, then drift removal, then the blinks (seed 0's first falls within these 3 s)
    assert options.expression and model.expression is not None
    features = audio_features(samples)
    offsets = lips.predict(model.lips, content.content_features(samples), features)
    generated = apply(expression.project(model.expression, generate(
        model.generator, source.x0, features, lip_scale=0.8), source.x0), offsets, 0.8)
    expected = source.to_image(remove_drift(generated, round(options.drift_window_s * 25)))
    closure = talking_head.eye_closure(model, options, len(expected))
    assert closure.max() > 0.5
    assert_close(keypoints, blink.apply(expected, closure), rel=1e-5)
    loudness = talking_head.keypoints(model, source, samples,
                                      dataclasses.replace(options, mouth="loudness"))
    assert np.abs(loudness - keypoints).max() > 1e-3

    streamer = talking_head.streamer(model, source, options, draw=False)
    assert streamer.lips is not None and streamer.articulation is None
    out = []
    for start in range(0, samples.size, chunk):
        out += streamer.push(samples[start:start + chunk])
    out += streamer.close()
    streamed = np.stack([f.keypoints for f in out])
    assert_close(source.to_image(streamed), expected, rel=1e-5)
    assert streamer.buffered()["lip_frames"] <= 150
    assert streamer.delay_frames == 29 + round(options.drift_window_s * 25) // 2


def test_the_low_latency_pipeline_streams_within_its_bound(content_model):
    """A low-latency model (``fpn_lookahead`` 5, a lip model 2 frames after with content
    labelled 3 frames ahead, drift removal causal): the streamed keypoints are the offline
    ones, which are the generator's, the mouth's and the trailing drift removal's; frames
    leave 5 frames after their audio; nothing 6 frames after a frame changes it offline."""
    config = dataclasses.replace(TINY, fpn_lookahead=5)
    fitted = dataclasses.replace(_lip_model(after=2), content_lookahead=3)
    assert fitted.lookahead == 5
    model = dataclasses.replace(content_model, lips=fitted, drift_window_s=0.4,
                                generator=GeneratorModel(tiny_params(config), config))
    assert model.low_latency and not content_model.low_latency
    options = talking_head.resolve(model, GenerationOptions(crop=False, blinks=False,
                                                            audio_normalization="none"))
    image = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
    source = talking_head.prepare(model, image, options)
    samples = phantom_audio.utterance(3.0, seed=5)
    keypoints = talking_head.keypoints(model, source, samples, options)
    features = audio_features(samples)
    offsets = lips.predict(fitted, content.content_features(samples, 3), features)
    generated = apply(expression.project(model.expression,
                                         generate(model.generator, source.x0, features),
                                         source.x0), offsets)
    expected = source.to_image(remove_drift(generated, 10, causal=True))
    assert_close(keypoints, expected, rel=1e-5)

    streamer = talking_head.streamer(model, source, options, draw=False)
    assert streamer.delay_frames == 5
    out = []
    for start in range(0, samples.size, 640):
        new = streamer.push(samples[start:start + 640])
        # frame j's rows read samples < 640 j + 760
        complete = max(0, min((start + 640 - 760) // 640 + 1, (start + 640) // 640))
        assert len(out) + len(new) >= complete - 5 - 1, start
        out += new
    out += streamer.close()
    assert_close(source.to_image(np.stack([f.keypoints for f in out])), keypoints, rel=1e-5)

    t = 40
    changed = samples.copy()
    changed[640 * (t + 6):] = np.random.default_rng(1).normal(scale=0.3, size=changed.size
                                                                - 640 * (t + 6))
    again = talking_head.keypoints(model, source, changed, options)
    assert_close(again[:t + 1], keypoints[:t + 1], rel=1e-5)
    assert np.abs(again[t + 10:] - keypoints[t + 10:]).max() > 1e-3


def test_latency_low_loads_a_low_latency_model(media, capsys):
    with pytest.raises(InputError, match="--latency low needs a low-latency model.*29 frames"):
        talking_head.load(media["model"], latency="low")
    with pytest.raises(InputError, match="--latency must be one of full, low"):
        talking_head.load(media["model"], latency="fast")
    assert talking_head.load(media["model"], latency="full").generator.config.lookahead == 29
    low = talking_head.load(None, latency="low")
    full = talking_head.load(None)
    assert low.low_latency and low.generator.config.lookahead == 5 and not full.low_latency
    assert low.lips is not None and low.lips.lookahead == 5 and full.lips.lookahead == 16
    # the bundled model's twin: its sizes, keypoint space and features, a few MB
    assert dataclasses.replace(low.generator.config, fpn_lookahead=None) == \
        full.generator.config
    assert (low.keypoint_space, low.feature_kind) == (full.keypoint_space, full.feature_kind)
    assert any("model.fpn_lookahead=5" in line for line in low.info["recipe"])
    assert sum(f.stat().st_size for f in talking_head.LOW_LATENCY_MODEL_DIR.iterdir()) < \
        10 * 2 ** 20


def test_the_mouth_defaults_to_content_when_the_model_has_a_lip_model(content_model):
    assert talking_head.resolve(content_model, GenerationOptions()).mouth == "content"
    without = dataclasses.replace(content_model, lips=None)
    assert talking_head.resolve(without, GenerationOptions()).mouth == "loudness"
    with pytest.raises(InputError, match="no lip model.*--mouth loudness"):
        talking_head.resolve(without, GenerationOptions(mouth="content"))


def test_a_file_read_in_blocks_gives_the_held_samples_keypoints(content_model, monkeypatch,
                                                                tmp_path):
    """``msync generate`` reads long speech a block at a time (``open_speech``): features by
    block, what is said decoded block by block. Its keypoints, content mouth included, are
    exactly those of the same samples held (the page's short uploads, a library user's)."""
    from syncers.data import features as features_lib

    monkeypatch.setattr(features_lib, "STREAM_SAMPLES", 5000)
    monkeypatch.setattr(features_lib, "BLOCK_SAMPLES", 7777)
    monkeypatch.setattr(features_lib, "BLOCK_ROWS", 97)
    path = tmp_path / "speech.wav"
    soundfile.write(path, phantom_audio.utterance(3.0, seed=5), 16000)
    options = talking_head.resolve(content_model, GenerationOptions(crop=False))
    assert options.mouth == "content"
    image = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
    source = talking_head.prepare(content_model, image, options)
    speech = features_lib.open_speech(path)
    assert speech.samples is None and len(list(speech.blocks())) == 7
    read = talking_head.keypoints(content_model, source, speech, options)
    held = talking_head.keypoints(content_model, source, load_audio(path), options)
    assert read.shape == (75, 10, 6)
    np.testing.assert_array_equal(read, held)
