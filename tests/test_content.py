"""Speech content features (syncers/data/content.py): the phone → viseme labels, the per-frame
occupancies, and the stream's look-ahead bound and its equality with the offline features."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from syncers.data import content
from syncers.data.features import load_audio, n_video_frames
from syncers.data.layout import SAMPLE_RATE, SAMPLES_PER_FRAME

SPEECH = Path(__file__).resolve().parents[1] / "motion" / "assets" / "speech.flac"
SILENCE_SECONDS = 1.5


@pytest.fixture(scope="module")
def padded_speech() -> np.ndarray:
    """The bundled 6 s of English speech between 1.5 s of faint noise on each side."""
    speech = load_audio(SPEECH)[:4 * SAMPLE_RATE]
    quiet = 1e-4 * np.random.default_rng(0).standard_normal(int(SILENCE_SECONDS * SAMPLE_RATE))
    return np.concatenate([quiet, speech, quiet]).astype(np.float32)


@pytest.fixture(scope="module")
def offline(padded_speech) -> np.ndarray:
    return content.content_features(padded_speech)


def test_every_phone_of_the_model_has_a_viseme():
    assert len(content.PHONE_VISEME) == 39 + 3     # CMU's 39 phones, silence and two noises
    assert content.PHONE_VISEME["M"] == content.VISEMES.index("closed")
    assert content.PHONE_VISEME["UW"] == content.VISEMES.index("rounded")
    assert content.PHONE_VISEME["IY"] == content.VISEMES.index("spread")
    assert content.PHONE_VISEME["AA"] == content.VISEMES.index("open")
    assert content.PHONE_VISEME["SIL"] == content.REST


def test_rows_and_occupancy_of_known_segments():
    segments = [SimpleNamespace(word="SIL", start_frame=0, end_frame=2),
                SimpleNamespace(word="B", start_frame=3, end_frame=4),
                SimpleNamespace(word="AA", start_frame=5, end_frame=9)]
    rows = content.row_visemes(segments, 12)
    closed, open_ = content.VISEMES.index("closed"), content.VISEMES.index("open")
    assert rows.tolist() == [content.REST] * 3 + [closed] * 2 + [open_] * 7   # tail: last phone
    frames = content.occupancy(rows, 0, 3)
    assert frames.shape == (3, content.N_VISEMES)
    np.testing.assert_allclose(frames.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(frames[0, [content.REST, closed]], [0.75, 0.25], rtol=1e-6)
    np.testing.assert_allclose(frames[1, [closed, open_]], [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(frames[2, open_], 1.0, rtol=1e-6)


def test_speech_is_labelled_and_silence_rests(padded_speech, offline):
    assert offline.shape == (n_video_frames(len(padded_speech)), content.N_VISEMES)
    np.testing.assert_allclose(offline.sum(axis=1), 1.0, rtol=1e-6)
    edge = int(SILENCE_SECONDS * 25) - 5          # frames well inside each quiet stretch
    rest = offline[:, content.REST]
    assert rest[:edge].mean() > 0.9 and rest[-edge:].mean() > 0.9
    speech = offline[edge + 10:-edge - 10]
    assert rest[edge + 10:-edge - 10].mean() < 0.5
    # speech uses many mouth shapes, not one
    assert np.count_nonzero(speech.mean(axis=0) > 0.02) >= 6


@pytest.mark.parametrize("chunk", [1, 640, 999, 16000])
def test_the_stream_is_the_offline_features_for_any_chunking(padded_speech, offline, chunk):
    stream = content.ContentStream()
    frames = [stream.push(padded_speech[i:i + chunk]) for i in range(0, len(padded_speech),
                                                                     chunk)]
    np.testing.assert_array_equal(np.concatenate(frames + [stream.close()]), offline)


def test_a_frame_waits_for_exactly_its_lookahead(padded_speech):
    lookahead = 5
    stream = content.ContentStream(lookahead)
    emitted = 0
    for start in range(0, len(padded_speech), 1500):
        emitted += len(stream.push(padded_speech[start:start + 1500]))
        end = min(start + 1500, len(padded_speech))
        assert emitted == max(0, n_video_frames(end) - lookahead)
    assert emitted + len(stream.close()) == n_video_frames(len(padded_speech))


def test_lookahead_none_waits_for_the_end_and_agrees_with_a_long_one(padded_speech, offline):
    stream = content.ContentStream(None)
    assert len(stream.push(padded_speech)) == 0
    final = stream.close()
    np.testing.assert_array_equal(final, content.content_features(padded_speech, 10_000))
    # the default look-ahead labels most frames as the whole utterance's best path does
    assert np.mean(final.argmax(axis=1) == offline.argmax(axis=1)) > 0.8


def test_int16_and_float_samples_agree(padded_speech):
    pcm = np.round(np.clip(padded_speech, -1, 1) * 32767).astype(np.int16)
    np.testing.assert_array_equal(content.content_features(pcm[:SAMPLE_RATE]),
                                  content.content_features(padded_speech[:SAMPLE_RATE]))


def test_short_and_bad_input():
    assert content.content_features(np.zeros(SAMPLES_PER_FRAME - 1)).shape == \
        (0, content.N_VISEMES)
    with pytest.raises(ValueError, match="mono"):
        content.content_features(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="finite"):
        content.content_features(np.full(100, np.nan))
    with pytest.raises(ValueError, match="lookahead"):
        content.ContentStream(-1)
    stream = content.ContentStream()
    stream.close()
    with pytest.raises(ValueError, match="after close"):
        stream.push(np.zeros(10))


def test_a_long_stream_starts_new_utterances_in_pauses_and_keeps_its_labels(padded_speech):
    """Three copies of speech between pauses: the stream cuts its utterance in a pause (bounded
    work), still equals the offline features for any chunking, and still labels most frames as
    the whole recording's best path does."""
    long = np.tile(padded_speech, 3)
    offline = content.content_features(long)
    stream = content.ContentStream()
    frames = [stream.push(long[i:i + 4321]) for i in range(0, len(long), 4321)]
    assert stream._utterance_start > 0
    np.testing.assert_array_equal(np.concatenate(frames + [stream.close()]), offline)
    final = content.content_features(long, None)
    assert np.mean(final.argmax(axis=1) == offline.argmax(axis=1)) > 0.8


@pytest.mark.parametrize("block", [SAMPLES_PER_FRAME * 20, 7777])
def test_speech_fed_block_by_block_gives_the_offline_features(monkeypatch, padded_speech, offline,
                                                              block):
    """``speech_content`` feeds a Speech's blocks to one stream: exactly the features of the
    stream fed everything at once."""
    from syncers.data import features as features_lib

    monkeypatch.setattr(features_lib, "BLOCK_SAMPLES", block)
    speech = features_lib.Speech.held(padded_speech)
    assert speech.n_blocks() == len(list(speech.blocks())) > 5
    np.testing.assert_array_equal(content.speech_content(speech), offline)
