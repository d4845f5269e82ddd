"""Audio loading (any rate, channels, depth, container) and the 100 Hz feature alignment."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import soundfile

from syncers.data import official_audio
from syncers.data.features import SAMPLE_RATE, audio_features, load_audio
from syncers.run.errors import InputError

REAL_AUDIO = {  # file -> expected 16 kHz samples
    "RD_Radio31_000.wav": 128000,      # 16 kHz stereo s16
    "chinese_poem1.wav": 87552,        # 24 kHz mono: 131328 × 2/3
    "imagine.wav": 89690,              # 48 kHz stereo s24: 269070 / 3
    "WDA_KatieHill_000.mp4": 128000,   # AAC track of an mp4
}


@pytest.mark.parametrize("name", sorted(REAL_AUDIO))
def test_real_media_loads_at_16k_mono(real_media, name):
    samples = load_audio(real_media / name)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size - REAL_AUDIO[name]) <= 2
    assert 0.005 < np.sqrt(np.mean(samples ** 2)) < 1.0      # speech, not silence or garbage


def test_eight_seconds_give_800_feature_frames(real_media):
    features = audio_features(load_audio(real_media / "RD_Radio31_000.wav"))
    assert features.shape == (800, 26) and features.dtype == np.float32
    assert np.all(np.isfinite(features))


def test_resampling_and_mixdown_keep_the_tone(tmp_path):
    rate, seconds = 44100, 1.0
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    stereo = np.stack([tone, tone], axis=1)
    path = tmp_path / "tone.wav"
    soundfile.write(path, stereo, rate, subtype="PCM_24")
    samples = load_audio(path)
    assert samples.size == pytest.approx(SAMPLE_RATE * seconds, abs=2)
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / samples.size
    assert peak_hz == pytest.approx(440.0, abs=2.0)
    assert np.max(np.abs(samples)) == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("n_samples,expected", [(128000, 800), (127999, 796), (639, 0),
                                                (640, 4), (16000, 100)])
def test_feature_count_is_four_per_whole_video_frame(n_samples, expected):
    noise = np.random.default_rng(0).normal(size=n_samples).astype(np.float32) * 0.1
    assert audio_features(noise).shape == (expected, 26)


def test_frame_alignment_rule():
    """A click in hop m lands in feature frame m (windows centred on the hop centre)."""
    samples = np.zeros(16000, np.float32)
    for hop in (40, 41, 90):
        click = samples.copy()
        click[hop * 160 + 80] = 1.0
        energy = audio_features(click).sum(axis=1)
        assert int(np.argmax(energy)) == hop
        # the click is inside exactly the windows whose span covers it: m-1, m, m+1
        loud = np.flatnonzero(energy > energy.min() + 1.0)
        assert set(loud) <= {hop - 1, hop, hop + 1}


def test_mfcc_is_the_dct_of_the_log_mel():
    noise = np.random.default_rng(1).normal(size=32000).astype(np.float32)
    logmel = audio_features(noise)
    mfcc = audio_features(noise, kind="mfcc")
    np.testing.assert_allclose(mfcc, scipy.fft.dct(logmel, type=2, axis=1, norm="ortho"),
                               rtol=1e-4, atol=1e-3)


def test_silence_stays_finite():
    features = audio_features(np.zeros(6400, np.float32))
    assert np.all(np.isfinite(features)) and features.max() == features.min()


def test_bad_audio_names_the_file(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(InputError, match="missing.wav: no such file"):
        load_audio(missing)
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    with pytest.raises(InputError, match="notes.wav: cannot decode audio"):
        load_audio(text)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="empty.wav: the audio is empty"):
        load_audio(empty)


@pytest.mark.parametrize("rate", [1, 3999, 768_001])
def test_an_absurd_sample_rate_is_refused_before_resampling(tmp_path, rate):
    """A "1 Hz" wav would be resampled into 16000 times its samples: refused from the header,
    by msync's front-end and the official one alike."""
    path = tmp_path / f"rate{rate}.wav"
    soundfile.write(path, np.zeros(100, np.float32), rate)
    message = f"rate{rate}.wav: sample rate {rate} Hz is outside the 4000-768000 Hz msync reads"
    with pytest.raises(InputError, match=message):
        load_audio(path)
    with pytest.raises(InputError, match=message):
        official_audio.read_samples(path)
    soundfile.write(tmp_path / "phone.wav", np.zeros(8000, np.float32), 8000)
    assert load_audio(tmp_path / "phone.wav").shape == (16000,)


@pytest.mark.parametrize("kind", ["logmel", "mfcc"])
def test_long_audio_in_blocks_gives_the_same_rows(monkeypatch, kind):
    """A long recording's spectrogram is made ``BLOCK_ROWS`` rows at a time: the rows are those
    of one STFT over the whole signal, at both ends (librosa's reflect centring) and across
    every block boundary."""
    from syncers.data import features as features_lib

    samples = np.random.default_rng(7).normal(scale=0.1, size=16000 * 7 + 333).astype(np.float32)
    whole = features_lib.audio_features(samples, kind)
    monkeypatch.setattr(features_lib, "BLOCK_ROWS", 97)
    blocked = features_lib.audio_features(samples, kind)
    assert blocked.shape == whole.shape == (4 * (samples.size // 640), 26)
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-6 * np.abs(whole).max())


def _small_blocks(monkeypatch, stream=5000, block=3001, rows=97):
    """Files past ``stream`` samples read ``block`` at a time, features ``rows`` per STFT: a few
    seconds of audio cross many blocks."""
    from syncers.data import features as features_lib

    monkeypatch.setattr(features_lib, "STREAM_SAMPLES", stream)
    monkeypatch.setattr(features_lib, "BLOCK_SAMPLES", block)
    monkeypatch.setattr(features_lib, "BLOCK_ROWS", rows)


@pytest.mark.parametrize("channels, subtype", [(1, "PCM_16"), (2, "FLOAT")])
def test_a_long_file_is_read_in_blocks_with_load_audios_samples_and_rows(monkeypatch, tmp_path,
                                                                         channels, subtype):
    """``open_speech`` reads a long 16 kHz file a block at a time: its blocks are
    ``load_audio``'s samples exactly, and its features are the held samples' exactly."""
    from syncers.data.features import Speech, open_speech, speech_features

    _small_blocks(monkeypatch)
    data = np.random.default_rng(1).uniform(-0.5, 0.5, size=(16000 * 2 + 777, channels))
    path = tmp_path / "long.wav"
    soundfile.write(path, data, 16000, subtype=subtype)
    speech = open_speech(path)
    held = load_audio(path)
    assert speech.samples is None and speech.path == str(path)
    assert speech.n_samples == held.size and speech.seconds == held.size / 16000
    blocks = list(speech.blocks())
    assert len(blocks) == 11 and all(b.dtype == np.float32 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), held)
    np.testing.assert_array_equal(speech.all(), held)
    np.testing.assert_array_equal(speech.read(1234, 9999), held[1234:9999])
    for kind in ("logmel", "mfcc"):
        np.testing.assert_array_equal(speech_features(speech, kind),
                                      speech_features(Speech.held(held), kind))
        np.testing.assert_array_equal(speech_features(speech, kind), audio_features(held, kind))


def test_short_files_are_held(monkeypatch, tmp_path):
    from syncers.data.features import open_speech

    _small_blocks(monkeypatch)
    soundfile.write(tmp_path / "short.wav", np.zeros(4000, np.float32), 16000)
    soundfile.write(tmp_path / "rate.wav", np.zeros(4410, np.float32), 44100)
    for name in ("short.wav", "rate.wav"):
        speech = open_speech(tmp_path / name)
        assert speech.samples is not None and speech.path == str(tmp_path / name)
        np.testing.assert_array_equal(speech.samples, load_audio(tmp_path / name))
        np.testing.assert_array_equal(np.concatenate(list(speech.blocks())), speech.samples)


def test_long_files_of_other_rates_and_formats_are_decoded_into_a_temporary_file(monkeypatch,
                                                                                  tmp_path):
    """A long 44.1 kHz stereo wav (resampled by soxr's stream) and a large mp3 (decoded by
    ffmpeg) are read from a temporary 16 kHz file with ``load_audio``'s samples exactly; the
    file goes with the Speech; the sound is still the original's."""
    import gc
    import os

    import imageio_ffmpeg

    from syncers.data import features as features_lib
    from syncers.data.features import open_speech

    _small_blocks(monkeypatch)
    monkeypatch.setattr(features_lib, "SPOOL_CONTAINER_BYTES", 1000)
    data = np.random.default_rng(2).uniform(-0.3, 0.3, size=(44100 * 3 + 5, 2))
    soundfile.write(tmp_path / "cd.wav", data, 44100)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i",
                    str(tmp_path / "cd.wav"), str(tmp_path / "cd.mp3")], check=True)
    for name in ("cd.wav", "cd.mp3"):
        speech = open_speech(tmp_path / name)
        held = load_audio(tmp_path / name)
        assert speech.samples is None and speech.path == str(tmp_path / name)
        store = speech.store
        assert store is not None and os.path.isfile(store)
        assert speech.n_samples == held.size
        np.testing.assert_array_equal(np.concatenate(list(speech.blocks())), held)
        del speech
        gc.collect()
        assert not os.path.exists(store)
    nan = data.astype(np.float32)
    nan[100_000, 0] = np.nan
    soundfile.write(tmp_path / "nan.wav", nan, 44100, subtype="FLOAT")
    with pytest.raises(InputError, match="NaN") as err:
        open_speech(tmp_path / "nan.wav")
    assert "nan.wav" in str(err.value)
    silent = tmp_path / "video.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "color=c=black:s=64x64:d=1", "-pix_fmt", "yuv420p", str(silent)],
                   check=True)
    with pytest.raises(InputError, match="no audio track"):
        open_speech(silent)


def test_open_speech_refuses_what_load_audio_refuses(monkeypatch, tmp_path):
    """Missing, empty, unreadable files and NaN samples are refused, one line naming the file;
    a long float file's NaN before the long work starts."""
    from syncers.data.features import open_speech

    _small_blocks(monkeypatch)
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "junk.wav").write_bytes(b"not audio at all" * 100)
    nan = np.zeros(16000 * 2, np.float32)
    nan[25_000] = np.nan
    soundfile.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "rate.wav", np.zeros(100, np.float32), 1000)
    for name, message in (("missing.wav", "no such file"), ("empty.wav", "empty"),
                          ("junk.wav", "cannot decode audio"), ("nan.wav", "NaN"),
                          ("rate.wav", "sample rate 1000 Hz")):
        with pytest.raises(InputError, match=message) as err:
            open_speech(tmp_path / name)
        assert name in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(InputError, match=message):
            load_audio(tmp_path / name)


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("n_samples", [1, 300, 512, 16000 * 3 + 77])
def test_the_mel_front_end_is_librosas(center, n_samples):
    import librosa

    from syncers.data.features import mel_power
    if not center and n_samples < 512:
        with pytest.raises(ValueError, match="cannot fill one 512-sample frame"):
            mel_power(np.zeros(n_samples, np.float32), center)
        return
    rng = np.random.default_rng(n_samples)
    samples = (0.1 * rng.standard_normal(n_samples)).astype(np.float32)
    reference = librosa.feature.melspectrogram(
        y=samples, sr=SAMPLE_RATE, n_fft=512, hop_length=160, win_length=400, window="hann",
        center=center, pad_mode="reflect", power=2.0, n_mels=26, fmin=0.0, fmax=8000)
    ours = mel_power(samples, center)
    assert ours.dtype == reference.dtype and ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6 * float(reference.max()))


def test_features_do_not_load_librosas_feature_module():
    # Importing it costs about 1.5 s (numba, scipy.signal): most of a warm generate's own work.
    code = ("import sys, numpy as np\n"
            "from syncers.data.features import audio_features\n"
            "audio_features(np.ones(16000, np.float32))\n"
            "print('librosa.feature.spectral' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "False"
