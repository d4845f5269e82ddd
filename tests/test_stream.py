"""Streaming (``motion.stream``, ``msync stream``): the streamed features, keypoints and drift
removal equal the offline ones for every chunk size, a pushed chunk's work stays bounded however
long the stream has run, ``close`` flushes exactly the remaining frames, the FPN's reach into the
past that the bounded window relies on, and the command's mp4 and raw outputs and bad input."""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import pytest
from generator_helpers import jit, tiny_params
from tolerance import assert_close

from motion import source, stream
from motion.fpn import AudioFPN, lookback_frames
from motion.generate import generate, remove_drift
from motion.generator import TINY
from motion.model import GeneratorModel
from syncers.data.features import audio_features
from syncers.data.layout import PHANTOM_SPACE
from syncers.data.phantom import audio as phantom_audio

TINY_RESTORE = TINY.__class__(**{**TINY.__dict__, "restore_seconds": 0.5})
TINY_ANCHOR = TINY.__class__(**{**TINY_RESTORE.__dict__, "anchor_input": True})


@pytest.fixture(scope="module")
def model():
    return GeneratorModel(tiny_params(TINY), TINY)


@pytest.fixture(scope="module")
def low_model():
    config = dataclasses.replace(TINY, fpn_lookahead=5)
    return GeneratorModel(tiny_params(config), config)


@pytest.fixture(scope="module")
def speech():
    """4.3 s of phantom speech: 107 whole frames and a partial one (more than 3 FPN windows)."""
    samples = phantom_audio.utterance(4.4, seed=5)
    return samples[:int(4.3 * 16000) + 123]


def _image():
    return np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)


def _source():
    """The test image prepared as a phantom model's source (its centre square, no face)."""
    return source.prepare_source(_image(), PHANTOM_SPACE, crop=False)


def _chunks(samples, size):
    return [samples[i:i + size] for i in range(0, samples.size, size)]


@pytest.mark.parametrize("bound, reaches", [(None, (1, 5, 13, 29)), (5, (1, 5, 21, 53))])
def test_fpn_reach_into_the_past_is_documented_and_tight(bound, reaches):
    """The centred FPN and the low-latency one (``lookahead`` = 5: the coarse levels delayed
    by 8 and 24 frames read as much further back)."""
    assert lookback_frames(4, 1, bound) == reaches
    fpn = AudioFPN(channels=4, levels=4, post_convs=1, lookahead=bound)
    audio = jax.random.normal(jax.random.PRNGKey(2), (1, 4 * 120, 5))
    variables = jit(fpn.init)(jax.random.PRNGKey(3), audio)
    t = 71          # t ≡ 7 mod 8 (so is t − delay): every level's previous coarse frame is
                    # furthest back

    @jit
    def level_at_t(audio):
        return fpn.apply(variables, audio)[0, t]

    base = level_at_t(audio)
    for level, reach in enumerate(reaches):
        before = audio.at[:, :4 * (t - reach)].add(1.0)                 # beyond the reach
        np.testing.assert_array_equal(level_at_t(before)[level], base[level])
        at = audio.at[:, 4 * (t - reach):4 * (t - reach + 1)].add(1.0)  # the first frame read
        assert np.abs(level_at_t(at)[level] - base[level]).max() > 0


@pytest.mark.parametrize("size", [1, 37, 640, 1000, 20000])
def test_streamed_features_are_the_offline_features(speech, size):
    samples = speech[:size * 300] if size == 1 else speech   # one-sample pushes: 300 of them
    features = stream.FeatureStream()
    rows = [features.push(chunk) for chunk in _chunks(samples, size)] + [features.close()]
    streamed = np.concatenate(rows)
    offline = audio_features(samples)
    assert streamed.shape == offline.shape
    assert_close(streamed, offline, rel=1e-5)


def test_streamed_mfcc_and_short_clips(speech):
    for n in (700, 1300, 5000):
        features = stream.FeatureStream("mfcc")
        streamed = np.concatenate([features.push(speech[:n]), features.close()])
        assert_close(streamed, audio_features(speech[:n], "mfcc"), rel=1e-5)
    features = stream.FeatureStream()
    assert np.concatenate([features.push(speech[:639]), features.close()]).shape == (0, 26)


def _streamed_keypoints(model, samples, size, **kwargs):
    streamer = stream.Streamer(model, _source(), None, **kwargs)
    frames = []
    for chunk in _chunks(samples, size):
        frames += streamer.push(chunk)
    frames += streamer.close()
    assert [f.index for f in frames] == list(range(len(frames)))
    return np.stack([f.keypoints for f in frames]), streamer.x0


@pytest.mark.parametrize("which, size", [("model", 37), ("model", 640), ("model", 3000),
                                         ("model", 20000), ("low_model", 37),
                                         ("low_model", 640), ("low_model", 3000)])
def test_streamed_keypoints_are_generates(request, speech, which, size):
    """Chunks smaller than a feature hop, one video frame, several frames, and more than the
    look-ahead (29 frames = 18560 samples); and the low-latency FPN (``fpn_lookahead`` = 5: its
    window reaches 53 frames back)."""
    streaming_model = request.getfixturevalue(which)
    streamed, x0 = _streamed_keypoints(streaming_model, speech, size)
    offline = generate(streaming_model, x0, audio_features(speech))
    assert streamed.shape == offline.shape == (len(speech) // 640, 10, 6)
    assert_close(streamed, offline, rel=1e-5)


@pytest.mark.parametrize("seconds", [0.1, 0.3, 1.0])
def test_low_latency_short_clips_mirror_as_generate_does(low_model, speech, seconds):
    samples = speech[:int(seconds * 16000)]
    streamed, x0 = _streamed_keypoints(low_model, samples, 500)
    assert_close(streamed, generate(low_model, x0, audio_features(samples)), rel=1e-5)


def test_low_latency_frames_leave_within_their_bound(low_model, speech):
    """Frame i ≥ 1 leaves as soon as the features of frame i + 5 are in: with the push that
    completes them, never a push later (frame 0, x0, with the first frame's)."""
    streamer = stream.Streamer(low_model, _source(), None)
    assert streamer.keypoints.lookahead == 5 and streamer.delay_frames == 5
    n_out = 0
    for end in range(640, len(speech), 640):
        n_out += len(streamer.push(speech[end - 640:end]))
        # frame j's rows read samples < 640 j + 760 (syncers.data.features)
        complete = max(0, min((end - 760) // 640 + 1, end // 640))
        assert n_out == max(min(complete, 1), complete - 5), end


def test_streamed_with_restoring_term_scales_and_drift_removal(speech):
    model = GeneratorModel(tiny_params(TINY), TINY_RESTORE)
    streamed, x0 = _streamed_keypoints(model, speech, 1000, head_scale=0.5, lip_scale=2.0,
                                   drift_window_s=0.4)
    offline = generate(model, x0, audio_features(speech), head_scale=0.5, lip_scale=2.0)
    assert_close(streamed, remove_drift(offline, 10), rel=1e-5)
    plain = generate(GeneratorModel(tiny_params(TINY), TINY), x0, audio_features(speech),
                     head_scale=0.5, lip_scale=2.0)
    assert np.abs(offline - plain).max() > 1e-3          # the restoring term was in play


def test_streamed_with_the_anchor_input(speech):
    model = GeneratorModel(tiny_params(TINY_ANCHOR), TINY_ANCHOR)
    streamed, x0 = _streamed_keypoints(model, speech, 640)
    assert_close(streamed, generate(model, x0, audio_features(speech)), rel=1e-5)


@pytest.mark.parametrize("seconds", [0.05, 0.5, 1.0, 1.3])
def test_short_clips_mirror_as_generate_does(model, speech, seconds):
    """Clips no longer than the look-ahead's mirror (symmetric padding in generate)."""
    samples = speech[:int(seconds * 16000)]
    streamed, x0 = _streamed_keypoints(model, samples, 500)
    offline = generate(model, x0, audio_features(samples))
    assert_close(streamed, offline, rel=1e-5)


@pytest.mark.parametrize("window", [2, 5, 10, 25])
@pytest.mark.parametrize("length", [1, 3, 7, 30])
def test_streamed_drift_removal_is_remove_drift(window, length):
    keypoints = np.cumsum(np.random.default_rng(length).normal(size=(length, 10, 6)), axis=0)
    keypoints = keypoints.astype(np.float32)
    for size in (1, 4, 100):
        drift = stream.DriftStream(window)
        out = [drift.push(keypoints[i:i + size]) for i in range(0, length, size)]
        out = np.concatenate(out + [drift.close()])
        assert_close(out, remove_drift(keypoints, window), rel=1e-6)


@pytest.mark.parametrize("window", [2, 5, 25])
@pytest.mark.parametrize("length", [1, 3, 30])
def test_streamed_causal_drift_removal_waits_for_nothing(window, length):
    """The trailing form: every frame goes out with the push that brings it, the values
    offline's; no frame depends on a later one."""
    keypoints = np.cumsum(np.random.default_rng(length).normal(size=(length, 10, 6)), axis=0)
    keypoints = keypoints.astype(np.float32)
    offline = remove_drift(keypoints, window, causal=True)
    for size in (1, 4, 100):
        drift = stream.DriftStream(window, causal=True)
        assert drift.delay == 0
        out = [drift.push(keypoints[i:i + size]) for i in range(0, length, size)]
        assert sum(map(len, out)) == length and len(drift.close()) == 0
        assert_close(np.concatenate(out), offline, rel=1e-6)
    changed = keypoints.copy()
    changed[length // 2 + 1:] += 1.0
    np.testing.assert_array_equal(remove_drift(changed, window, causal=True)[:length // 2 + 1],
                                  offline[:length // 2 + 1])


def test_causal_drift_removal_is_a_trailing_mean():
    """Frame t minus the mean deviation from frame 0 of frames t − 2·half .. t (zero before
    frame 0): a constant velocity leaves half a window's walk."""
    keypoints = np.zeros((40, 10, 6), np.float32) + np.arange(40, dtype=np.float32)[:, None,
                                                                                      None]
    out = remove_drift(keypoints, 5, causal=True)                  # half 2: 5 frames
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[1], 1 - 1 / 5)                  # (0 + 1) / 5 removed
    np.testing.assert_allclose(out[10:], 2.0, rtol=1e-6)           # t − (t − 2)
    np.testing.assert_allclose(remove_drift(keypoints, 5)[2:-2], 0.0, atol=1e-5)   # centred


def test_close_flushes_exactly_the_frames_waiting_for_their_look_ahead(model, speech):
    streamer = stream.Streamer(model, _source(), None)
    pushed = streamer.push(speech)
    n_frames = len(speech) // 640
    # frames whose feature rows are complete, less those still waiting for their look-ahead
    complete = (len(speech) - 760) // 640 + 1
    assert len(pushed) == complete - TINY.lookahead
    rest = streamer.close()
    assert len(pushed) + len(rest) == n_frames
    assert [f.index for f in pushed + rest] == list(range(n_frames))
    assert streamer.close() == []


def test_work_per_chunk_is_bounded(model):
    """60 s in 40 ms chunks: every stage's buffer stays bounded, and a chunk pushed after 58 s
    costs about what one pushed after 2 s costs."""
    rng = np.random.default_rng(0)
    samples = (rng.normal(size=60 * 16000) * 0.1).astype(np.float32)
    streamer = stream.Streamer(model, _source(), None, drift_window_s=1.0)
    largest = {}
    times = []
    n_frames = 0
    for chunk in _chunks(samples, 640):
        # CPU time of this process, not wall time: other jobs on the machine (a CI host's
        # neighbours) stretch wall time by whatever they take, and this compares work.
        started = time.process_time()
        n_frames += len(streamer.push(chunk))
        times.append(time.process_time() - started)
        for key, value in streamer.buffered().items():
            largest[key] = max(largest.get(key, 0), value)
    assert n_frames == 1500 - 1 - TINY.lookahead - streamer.drift.half
    window = streamer.keypoints.window
    assert largest["samples"] <= 1100 + 640
    assert largest["feature_rows"] <= 4 * (window + TINY.lookahead + 2)
    assert largest["drift_frames"] <= 2 * 12 + 2
    early = np.median(times[50:125])                  # 2 to 5 s
    late = np.median(times[-75:])                     # the last 3 s
    assert late < 2.0 * early + 1e-3, (early, late)


# --------------------------------------------------------------------------- msync stream

@pytest.fixture(scope="module")
def command_media(tmp_path_factory, model):
    """A tiny phantom model, a face photo and 1.5 s of speech (wav and raw PCM)."""
    import soundfile
    from PIL import Image
    from skimage import data, transform

    from motion.saved_model import save_model
    from syncers.data.features import feature_config

    root = tmp_path_factory.mktemp("stream")
    saved = save_model(root / "model", model, keypoint_space="phantom-v1",
                       features=feature_config("logmel"), drift_window_s=0.4)
    crop = data.astronaut()[10:250, 110:350]
    pixels = (transform.resize(crop, (96, 96), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)
    Image.fromarray(pixels).save(root / "face.png")
    speech = phantom_audio.utterance(1.5, seed=2)[:int(1.5 * 16000) - 100]
    soundfile.write(root / "speech.wav", speech, 16000, subtype="PCM_16")
    pcm = np.round(np.clip(speech, -1, 1) * 32767).astype("<i2")
    (root / "speech.raw").write_bytes(pcm.tobytes())
    (root / "torn.raw").write_bytes(pcm.tobytes() + b"\x01")
    (root / "empty.raw").write_bytes(b"")
    return {"root": root, "model": saved, "face": root / "face.png",
            "wav": root / "speech.wav", "raw": root / "speech.raw", "torn": root / "torn.raw",
            "empty": root / "empty.raw", "samples": len(speech)}


def _stream(monkeypatch, capsys, media, *argv, stdin=None):
    """``msync stream`` in this process, ``stdin`` a file; → (code, stdout bytes, stderr)."""
    import io

    from motion.app import cli

    out = io.BytesIO()
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(out))
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(open(stdin, "rb")))
    code = cli.main(["stream", "--image", str(media["face"]), "--model", str(media["model"]),
                     *map(str, argv)])
    sys_stdout = __import__("sys").stdout
    sys_stdout.flush()
    return code, out.getvalue(), capsys.readouterr().err


def test_stream_command_writes_raw_frames_as_they_come(monkeypatch, capsys, command_media):
    code, raw, err = _stream(monkeypatch, capsys, command_media, "--out", "-", "--verbose",
                             stdin=command_media["raw"])
    assert code == 0, err
    n_frames = command_media["samples"] // 640
    assert len(raw) == n_frames * 256 * 256 * 3
    frames = np.frombuffer(raw, np.uint8).reshape(n_frames, 256, 256, 3)
    assert np.abs(frames[n_frames // 2].astype(int) - frames[0]).max() > 0   # the face moved
    lines = err.strip().splitlines()
    assert "look-ahead 34 frames" in lines[0]                   # 29 + half of 0.4 s
    assert sum("msync stream: chunk" in line for line in lines) >= command_media["samples"] // 640
    assert lines[-1].startswith(f"msync stream: {n_frames} frames") and "p95" in lines[-1]


def test_stream_command_writes_an_mp4_with_the_speech(monkeypatch, capsys, command_media,
                                                      tmp_path):
    from syncers.data.video import probe, read_video

    out = tmp_path / "live.mp4"
    code, _, err = _stream(monkeypatch, capsys, command_media, "--audio", command_media["wav"],
                           "--out", out, "--chunk-ms", "100")
    assert code == 0, err
    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.fps) == ("h264", "aac", 25.0)
    seconds = command_media["samples"] / 16000
    assert abs(info.duration - seconds) < 0.06
    assert len(read_video(out)) == -(-command_media["samples"] // 640)
    assert err.count("\n") == 1 and "frame latency p50" in err


@pytest.mark.parametrize("case, problem", [
    ("torn", "stdin: ends in the middle of a 16-bit sample"),
    ("empty", "stdin: no audio came in"),
    ("short", "less than one 40 ms video frame"),
    ("suffix", "--out must name a .mp4 file"),
    ("rate", "--sample-rate must be"),
    ("latency", "--latency low needs a low-latency model"),
])
def test_stream_command_bad_input_is_one_line(monkeypatch, capsys, command_media, tmp_path,
                                              case, problem):
    if case == "short":
        (tmp_path / "short.raw").write_bytes(b"\x00\x01" * 600)
    stdin = {"torn": command_media["torn"], "empty": command_media["empty"],
             "short": tmp_path / "short.raw"}.get(case, command_media["raw"])
    out = tmp_path / ("x.avi" if case == "suffix" else "x.mp4")
    extra = {"rate": ["--sample-rate", "50"], "latency": ["--latency", "low"]}.get(case, [])
    code, _, err = _stream(monkeypatch, capsys, command_media, "--out", out, *extra, stdin=stdin)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("msync: error: ") and problem in err, err
    if case == "torn":       # every frame of the complete samples is written, then the error
        from syncers.data.video import read_video
        assert len(read_video(out)) == -(-command_media["samples"] // 640)
    else:
        assert not out.exists()


def test_stream_raw_output_of_a_torn_stream_has_every_complete_frame(monkeypatch, capsys,
                                                                     command_media):
    """A stray byte after the last whole sample: the frames of the complete samples all go
    out (as for the same stream without it), then one line and exit 2."""
    code, raw, err = _stream(monkeypatch, capsys, command_media, "--out", "-",
                             stdin=command_media["torn"])
    _, whole, _ = _stream(monkeypatch, capsys, command_media, "--out", "-",
                          stdin=command_media["raw"])
    assert code == 2, err
    assert err.count("\n") == 1 and "ends in the middle of a 16-bit sample" in err, err
    assert len(raw) == len(whole) > 0
    assert raw == whole
