"""Audio loading and the 100 Hz audio features every stage consumes (docs/design.md,
"Audio features").

``load_audio`` turns any wav/flac/ogg/mp3/mp4/mov/... into float32 mono at 16 kHz (any input
rate, channel count or bit depth). :class:`Speech` is the same audio as the pipeline reads it
(:func:`open_speech`): a long 16 kHz sound file is read a block at a time, so an hour of speech
costs its features' memory, not its samples' (230 MB); anything else is held (``load_audio``'s
samples). :func:`speech_features` gives a :class:`Speech`'s features, the same rows whether it
is held or read from its file. ``audio_features`` turns those samples into ``[4T, 26]``
log-mel filterbank energies — 26 bands, 400-sample (25 ms) window, 160-sample (10 ms) hop,
n_fft 512 — or, with ``kind="mfcc"``, 26 MFCCs of the same frames. The paper says "26-d MFCC";
the official code feeds 26 log-filterbank energies, which is our default. ``kind="official"`` is
the released MS-Sync model's own front-end (``syncers.data.official_audio``), which reads the
file itself (:func:`features_of`) and has its own row count.

Frame alignment: video frame t (25 fps) covers samples ``[640 t, 640 (t+1))``. Feature frame m
describes the 10 ms hop ``[160 m, 160 (m+1))`` and is computed on the 400-sample window centred
on that hop's centre, ``[160 m − 120, 160 m + 280)`` (reflect-padded at the ends). So feature
frames ``4t .. 4t+3`` are exactly video frame t, and a clip of ``T = floor(n_samples / 640)``
whole video frames has exactly ``4T`` feature frames (8.00 s → 200 frames → 800 features);
trailing samples that do not fill a video frame are dropped.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
from scipy.stats import rankdata

from syncers.data import official_audio
from syncers.data.layout import FEATURE_HOP as HOP
from syncers.data.layout import (
    FEATURES_PER_FRAME,
    MAX_INPUT_RATE,
    MIN_INPUT_RATE,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
)
from syncers.run.errors import InputError

WINDOW = 400
# Rows per STFT of a long recording (60 s): its spectrogram is held one block at a time, so
# an hour of audio costs its features' memory, not its complex spectrogram's (≈ 20× more).
BLOCK_ROWS = 6000
# A 16 kHz sound file longer than this (60 s) is read BLOCK_SAMPLES at a time (Speech) rather
# than held; the content decoder (syncers.data.content.speech_content) is fed such blocks too.
STREAM_SAMPLES = BLOCK_SAMPLES = BLOCK_ROWS * HOP
# A container (mp3, mp4, ...) larger than this is decoded into a temporary 16 kHz wav and read
# from there (its length is not known before decoding; 8 MB is about 8 minutes of 128 kb/s mp3).
SPOOL_CONTAINER_BYTES = 8 << 20
N_FFT = 512
N_BANDS = 26
_LOG_FLOOR = 1e-8                       # keeps digital silence finite: log(1e-8) ≈ −18.4

FeatureKind = Literal["logmel", "mfcc", "official"]
_CONTAINERS = {".mp4", ".m4a", ".mov", ".mkv", ".avi", ".webm", ".aac", ".mp3", ".opus"}


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read an audio file (or a video's audio track) → ``[n_samples]`` float32 mono, 16 kHz.

    Channels are averaged; any sample rate is resampled (soxr, high quality). Raises
    :class:`InputError` naming the file when it is missing, unreadable or holds no audio.
    """
    path = _checked_file(path)
    if path.suffix.lower() in _CONTAINERS:
        samples = _decode_with_ffmpeg(path)
    else:
        try:
            samples = _decode_with_soundfile(path)
        except _RateRefused:
            raise
        except InputError:
            # soundfile reads wav/flac/ogg; anything else it rejects may still be audio ffmpeg
            # knows (a wav with an exotic codec, say).
            samples = _decode_with_ffmpeg(path)
    return _checked_samples(path, samples)


def _checked_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, refused when it is missing, not a file or empty."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty (0 bytes)")
    return path


def _mono(data_NxC: np.ndarray) -> np.ndarray:
    """``[n, C]`` → ``[n]``: the channels' mean (one channel: no copy)."""
    return data_NxC[:, 0] if data_NxC.shape[1] == 1 else data_NxC.mean(axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class Speech:
    """16 kHz mono float32 speech, ``n_samples`` long (:func:`open_speech` reads a file into
    one): ``samples [n_samples]`` held, or None when it is read from the 16 kHz sound file
    ``store`` (default ``path``) a block at a time (an hour costs no more memory than a minute;
    a long file of another rate or format is first decoded into a temporary 16 kHz ``store``,
    deleted with the Speech). ``path`` also names the speech in messages and gives the video
    its sound; None for samples without a file.

        speech = open_speech("talk.wav")
        for block in speech.blocks():            # [≤ BLOCK_SAMPLES] float32, in order
            ...
    """

    n_samples: int
    path: str | None = None
    samples: np.ndarray | None = None
    store: str | None = None      # the 16 kHz file read when not held (None: ``path`` itself)

    @classmethod
    def held(cls, samples: np.ndarray, path: str | os.PathLike | None = None) -> Speech:
        """Samples ``[n]`` (16 kHz mono, as :func:`load_audio` gives them) as a Speech."""
        samples = np.asarray(samples, np.float32)
        if samples.ndim != 1:
            raise ValueError(f"samples must be 1-D mono; got shape {samples.shape}")
        return cls(int(samples.size), None if path is None else os.fspath(path), samples)

    @property
    def seconds(self) -> float:
        return self.n_samples / SAMPLE_RATE

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Samples ``[lo, hi)`` (0 ≤ lo ≤ hi ≤ n_samples) as float32 ``[hi − lo]``."""
        if self.samples is not None:
            return self.samples[lo:hi]
        import soundfile

        try:
            with soundfile.SoundFile(self.store or self.path) as handle:
                handle.seek(lo)
                mono = _mono(handle.read(hi - lo, dtype="float32", always_2d=True))
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
            raise InputError(self.path, f"not a readable audio file ({err})") from None
        if mono.size != hi - lo:
            raise InputError(self.path, f"the file changed while it was read (samples {lo}-"
                                        f"{hi} of {self.n_samples} missing)")
        if not np.all(np.isfinite(mono)):
            raise InputError(self.path, "the audio contains NaN or infinite samples")
        return mono

    def n_blocks(self, size: int | None = None) -> int:
        """How many pieces :meth:`blocks` gives."""
        return -(-self.n_samples // (BLOCK_SAMPLES if size is None else int(size)))

    def blocks(self, size: int | None = None) -> Iterator[np.ndarray]:
        """The samples in order, ``size`` (default ``BLOCK_SAMPLES``) at a time."""
        size = BLOCK_SAMPLES if size is None else int(size)
        for lo in range(0, self.n_samples, size):
            yield self.read(lo, min(lo + size, self.n_samples))

    def all(self) -> np.ndarray:
        """Every sample ``[n_samples]`` (read whole when not held)."""
        return self.samples if self.samples is not None else self.read(0, self.n_samples)


def open_speech(path: str | os.PathLike) -> Speech:
    """The speech of an audio file (or a video's audio track), with :func:`load_audio`'s
    samples and refusals: a 16 kHz wav/flac/ogg longer than ``STREAM_SAMPLES`` is read from the
    file a block at a time (a float file is scanned for NaN now, so bad samples are refused
    before the long work); a longer file of another rate, or a container over
    ``SPOOL_CONTAINER_BYTES``, is decoded a block at a time into a temporary 16 kHz file read
    the same way (:func:`_spooled`); anything else is decoded whole and held."""
    import soundfile

    path = _checked_file(path)
    if path.suffix.lower() not in _CONTAINERS:
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError, ValueError):
            info = None                    # load_audio says why, or decodes it with ffmpeg
        if info is not None and info.samplerate == SAMPLE_RATE and info.frames > STREAM_SAMPLES:
            speech = Speech(int(info.frames), os.fspath(path))
            if info.subtype in ("FLOAT", "DOUBLE"):
                for _ in speech.blocks():      # read refuses a block with NaN or infinities
                    pass
            return speech
        if info is not None and info.frames * SAMPLE_RATE > STREAM_SAMPLES * info.samplerate:
            check_input_rate(path, info.samplerate)
            return _spooled(path, lambda store: _resample_into(path, store), scan=False)
    elif path.stat().st_size > SPOOL_CONTAINER_BYTES:
        return _spooled(path, lambda store: _decode_with_ffmpeg(path, store), scan=True)
    return Speech.held(load_audio(path), path)


def _spooled(path: Path, decode, scan: bool) -> Speech:
    """The speech of ``path`` decoded by ``decode(store)`` into a temporary 16 kHz float wav
    ``store`` and read from there (held when it turns out short); the file is deleted when the
    Speech is (or at exit). ``scan``: read it through once for NaN now, where ``decode`` did
    not check its samples."""
    import soundfile

    handle, store = tempfile.mkstemp(prefix="msync-speech-", suffix=".wav")
    os.close(handle)
    try:
        decode(store)
        n_samples = int(soundfile.info(store).frames)
        if n_samples <= STREAM_SAMPLES:
            samples, _ = soundfile.read(store, dtype="float32")
            os.unlink(store)
            return Speech.held(_checked_samples(path, samples), path)
        speech = Speech(n_samples, os.fspath(path), store=store)
    except BaseException:
        if os.path.exists(store):
            os.unlink(store)
        raise
    weakref.finalize(speech, _unlink_quietly, store)
    if scan:
        for _ in speech.blocks():          # NaN refused now, before the long work
            pass
    return speech


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _resample_into(path: Path, store: str) -> None:
    """``path`` (soundfile-readable, any rate) → ``store``: 16 kHz mono float32, resampled a
    block at a time by soxr's stream at the quality :func:`load_audio` uses (``soxr_hq``)."""
    import soundfile
    import soxr

    try:
        with soundfile.SoundFile(str(path)) as source, \
                soundfile.SoundFile(store, "w", SAMPLE_RATE, 1, "FLOAT") as out:
            stream = soxr.ResampleStream(source.samplerate, SAMPLE_RATE, 1, dtype="float32",
                                         quality="HQ")
            while True:
                data = source.read(BLOCK_SAMPLES, dtype="float32", always_2d=True)
                last = len(data) < BLOCK_SAMPLES
                mono = np.ascontiguousarray(_mono(data), np.float32)
                if not np.all(np.isfinite(mono)):
                    raise InputError(path, "the audio contains NaN or infinite samples")
                out.write(stream.resample_chunk(mono, last=last))
                if last:
                    break
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
        raise InputError(path, f"not a readable audio file ({err})") from None


def _checked_samples(path: Path, samples: np.ndarray) -> np.ndarray:
    """``samples`` as contiguous float32, refused when empty or not finite."""
    if samples.size == 0:
        raise InputError(path, "the audio is empty")
    if not np.all(np.isfinite(samples)):
        raise InputError(path, "the audio contains NaN or infinite samples")
    return np.ascontiguousarray(samples, np.float32)


def _decode_with_soundfile(path: Path) -> np.ndarray:
    import librosa
    import soundfile

    try:
        rate = soundfile.info(str(path)).samplerate
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
        raise InputError(path, f"not a readable audio file ({err})") from None
    check_input_rate(path, rate)
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError) as err:
        raise InputError(path, f"not a readable audio file ({err})") from None
    mono = _mono(data)
    if rate != SAMPLE_RATE and mono.size:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq")
    return np.ascontiguousarray(mono, dtype=np.float32)


class _RateRefused(InputError):
    """A readable file with an absurd sample rate (not a reason to try ffmpeg instead)."""


def check_input_rate(path, rate: int) -> None:
    """Refuse a file whose sample rate is outside ``MIN_INPUT_RATE``..``MAX_INPUT_RATE``."""
    if not MIN_INPUT_RATE <= rate <= MAX_INPUT_RATE:
        raise _RateRefused(path, f"sample rate {rate} Hz is outside the {MIN_INPUT_RATE}-"
                                 f"{MAX_INPUT_RATE} Hz msync reads")


def _decode_with_ffmpeg(path: Path, store: str | None = None) -> np.ndarray | None:
    """``path``'s first audio track at 16 kHz mono float32: returned, or written into the wav
    ``store`` (the same samples, never held: ffmpeg streams them)."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
               "-vn", "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE)]
    command += ["-f", "f32le", "-"] if store is None else \
        ["-c:a", "pcm_f32le", "-f", "wav", "-y", store]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"ffmpeg exit code {result.returncode}"
        if any("matches no streams" in line or "Stream map" in line for line in message):
            detail = "it has no audio track"
        raise InputError(path, f"cannot decode audio ({detail})")
    return None if store is not None else \
        np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)


def n_video_frames(n_samples: int) -> int:
    """Whole 25 fps video frames in ``n_samples`` of 16 kHz audio."""
    return int(n_samples) // SAMPLES_PER_FRAME


def audio_features(samples: np.ndarray, kind: FeatureKind = "logmel") -> np.ndarray:
    """``[n_samples]`` float 16 kHz → ``[4T, 26]`` float32 at 100 Hz (T = whole video frames).

    ``kind="logmel"``: natural log of 26 mel-band power energies (floored at 1e-8).
    ``kind="mfcc"``: the first 26 DCT-II coefficients of those log energies.
    ``kind="official"``: ``official_audio.logfbank`` — ``[N, 26]`` with N = 1 + ceil((n − 400)
    / 160), not 4T (the released model's inference maps 3.9943 rows to a video frame).
    See the module docstring for the frame-alignment rule.
    """
    if kind == official_audio.KIND:
        return official_audio.logfbank(samples)
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"samples must be 1-D mono; got shape {samples.shape}")
    if kind not in ("logmel", "mfcc"):
        raise ValueError(f"kind must be 'logmel', 'mfcc' or 'official'; got {kind!r}")
    return _rows(lambda lo, hi: samples[lo:hi], samples.size, kind)


def _rows(read, n_samples: int, kind: str) -> np.ndarray:
    """:func:`audio_features` of ``n_samples`` samples got from ``read(lo, hi)``: one STFT up to
    ``BLOCK_ROWS`` rows, else :func:`_rows_in_blocks` (held samples and a file read a block at a
    time take this one path, so they give the same rows)."""
    n_features = FEATURES_PER_FRAME * n_video_frames(n_samples)
    if n_features == 0:
        return np.zeros((0, N_BANDS), np.float32)
    # Dropping the first half hop turns librosa's frames centred on 160 m into frames centred
    # on 160 m + 80, the centre of hop m (module docstring).
    if n_features <= BLOCK_ROWS:
        features = _features(read(HOP // 2, n_samples), kind, center=True)[:n_features]
    else:
        features = _rows_in_blocks(read, n_samples, kind)
    assert features.shape[0] == n_features, (features.shape, n_features)
    return features


def _rows_in_blocks(read, n_samples: int, kind: str) -> np.ndarray:
    """:func:`audio_features` of ``n_samples`` samples, ``BLOCK_ROWS`` rows at a time, each
    block's samples ``[lo, hi)`` got from ``read(lo, hi)``. Row m is frame m of librosa's
    centred STFT of ``samples[HOP/2:]``: that signal's ``[HOP m − N_FFT/2, HOP m + N_FFT/2)``,
    reflected about its ends where it runs past them; a block is one uncentred STFT over its
    rows' reach, so its rows are those of the whole signal's STFT."""
    n_features = FEATURES_PER_FRAME * n_video_frames(n_samples)
    n_shifted = n_samples - HOP // 2
    out = np.empty((n_features, N_BANDS), np.float32)
    half = N_FFT // 2
    for first in range(0, n_features, BLOCK_ROWS):
        stop = min(first + BLOCK_ROWS, n_features)
        lo, hi = HOP * first - half, HOP * (stop - 1) + half
        piece = read(HOP // 2 + max(lo, 0), HOP // 2 + min(hi, n_shifted))
        piece = np.pad(piece, (max(0, -lo), max(0, hi - n_shifted)), mode="reflect")
        out[first:stop] = _features(piece, kind, center=False)
    return out


def speech_features(speech: Speech, kind: FeatureKind = "logmel") -> np.ndarray:
    """:func:`features_of` a :class:`Speech`: ``[4T, 26]`` (``official``: its own rows, read
    from ``speech.path``, or from the samples when there is no file), the same rows whether the
    samples are held or read from the file block by block."""
    if kind == official_audio.KIND:
        return features_of(speech.path, None if speech.path else speech.all(), kind)
    if kind not in ("logmel", "mfcc"):
        raise ValueError(f"kind must be 'logmel', 'mfcc' or 'official'; got {kind!r}")
    return _rows(speech.read, speech.n_samples, kind)


def framed_features(padded: np.ndarray, kind: FeatureKind = "logmel") -> np.ndarray:
    """The features of ``audio_features`` on a stretch of its padded signal: ``padded [n]``
    holds, from the first row's frame on, the samples after the first half hop with
    ``N_FFT // 2`` of reflect padding in front (librosa's centring), and gives one row per
    whole ``N_FFT`` frame at hop ``HOP``: ``[1 + (n − N_FFT) // HOP, 26]``. The streaming
    front-end (``motion.stream``) computes a clip's rows a few at a time with it."""
    return _features(np.asarray(padded, np.float32), kind, center=False)


def _features(samples: np.ndarray, kind: str, center: bool) -> np.ndarray:
    """``[n_rows, 26]`` log-mel energies (or MFCCs) of ``samples``' frames, centred (librosa's
    reflect padding) or not: the one definition of the front-end's parameters."""
    log_energy = np.log(np.maximum(mel_power(samples, center), _LOG_FLOOR))
    if kind == "mfcc":
        import scipy.fft
        log_energy = scipy.fft.dct(log_energy, type=2, axis=0, norm="ortho")
    return np.ascontiguousarray(log_energy.T, dtype=np.float32)


def mel_power(samples: np.ndarray, center: bool) -> np.ndarray:
    """``[26, n_rows]`` float32 mel power spectrogram of ``samples [n]``: librosa's
    ``feature.melspectrogram(sr=16000, n_fft=512, hop_length=160, win_length=400,
    window="hann", center=center, pad_mode="reflect", power=2, n_mels=26, fmin=0, fmax=8000)``,
    step for step (the same dtypes and order of operations, so the same numbers: tested against
    librosa). Computed here because importing librosa's feature module (numba, scipy.signal,
    its pitch tracker) takes about 1.5 s, most of a warm ``msync generate``'s own work."""
    samples = np.asarray(samples, np.float32)
    if center:
        samples = np.pad(samples, N_FFT // 2, mode="reflect")
    if samples.shape[-1] < N_FFT:
        raise ValueError(f"{samples.shape[-1]} samples cannot fill one {N_FFT}-sample frame")
    frames = np.lib.stride_tricks.sliding_window_view(samples, N_FFT)[::HOP]   # [n_rows, 512]
    spectrum = np.fft.rfft(_stft_window() * frames, axis=-1).astype(np.complex64)
    return np.einsum("tf,mf->mt", np.abs(spectrum) ** 2.0, _mel_filterbank(), optimize=True)


@functools.lru_cache(maxsize=None)
def _stft_window() -> np.ndarray:
    """``[512]`` float64: the periodic 400-sample Hann window centred in the 512-sample frame
    (scipy's ``get_window("hann", 400)`` zero-padded on both sides, as librosa pads it)."""
    n = np.arange(WINDOW)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / WINDOW)
    before = (N_FFT - WINDOW) // 2
    return np.pad(hann, (before, N_FFT - WINDOW - before))


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = hz / _MEL_STEP_HZ
    log = _MEL_BREAK + np.log(np.maximum(hz, 1e-10) / 1000.0) / _MEL_LOG_STEP
    return np.where(hz >= 1000.0, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= _MEL_BREAK, 1000.0 * np.exp(_MEL_LOG_STEP * (mel - _MEL_BREAK)),
                    _MEL_STEP_HZ * mel)


_MEL_STEP_HZ = 200.0 / 3                # Slaney: 3 mels per 200 Hz below 1 kHz,
_MEL_BREAK = 1000.0 / _MEL_STEP_HZ      # the mel of 1 kHz,
_MEL_LOG_STEP = np.log(6.4) / 27.0      # 27 mels per factor 6.4 above it


@functools.lru_cache(maxsize=None)
def _mel_filterbank() -> np.ndarray:
    """``[26, 257]`` float32: 26 triangular Slaney-normalised filters (unit area) spaced evenly
    in mels from 0 Hz to 8 kHz over the 257 bins of a 512-point FFT (librosa's
    ``filters.mel(sr=16000, n_fft=512, n_mels=26, fmin=0, fmax=8000)``)."""
    bin_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_BANDS + 2))
    widths = np.diff(edges_hz)
    ramps = np.subtract.outer(edges_hz, bin_hz)
    weights = np.zeros((N_BANDS, N_FFT // 2 + 1), np.float32)
    for band in range(N_BANDS):
        rising = -ramps[band] / widths[band]
        falling = ramps[band + 2] / widths[band + 1]
        weights[band] = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights


def features_of(path: str | os.PathLike | None, samples: np.ndarray,
                kind: FeatureKind = "logmel") -> np.ndarray:
    """:func:`audio_features` of an input file: ``official`` reads ``path`` itself (its own
    channel choice and resampling, ``official_audio.read_samples``); the other kinds, and every
    kind without a file, use ``samples`` (16 kHz mono, as :func:`load_audio` gives them)."""
    if kind == official_audio.KIND and path is not None:
        return official_audio.logfbank(official_audio.read_samples(path), path)
    return audio_features(samples, kind)


def feature_config(kind: FeatureKind = "logmel") -> dict:
    """What a dataset's manifest records about its features, so mismatches can be caught."""
    if kind == official_audio.KIND:
        return dict(official_audio.FEATURE_CONFIG)
    return {"kind": kind, "n_bands": N_BANDS, "sample_rate": SAMPLE_RATE, "hop": HOP,
            "window": WINDOW, "n_fft": N_FFT, "rate_hz": SAMPLE_RATE // HOP}


def feature_mismatch(a: dict | None, b: dict | None) -> str | None:
    """How two recorded feature configs (a manifest's, a syncer run's, a model's) differ, or
    None when nothing tells them apart: every key both record (``kind`` first) must have one
    value; a key only one records is not compared (older records hold fewer keys, a model
    built by hand may hold none)."""
    a, b = dict(a or {}), dict(b or {})
    differing = sorted((k for k in set(a) & set(b) if a[k] != b[k]), key=lambda k: k != "kind")
    if not differing:
        return None
    return ", ".join(f"{'feature ' * (k == 'kind')}{k} {a[k]!r} vs {b[k]!r}" for k in differing)


def match_features(features_4TxF: np.ndarray, quantiles_QxF: np.ndarray) -> np.ndarray:
    """Per-band quantile matching: ``[4T, F]`` → ``[4T, F]`` with each band's values replaced by
    the corpus's at the same rank.

    ``quantiles [Q, F]`` are the corpus's per-band quantiles at levels ``linspace(0, 1, Q)``.
    A value of mid-rank ``u = (rank − ½) / 4T`` (tied values share their mean rank, so a band
    that is constant maps to the corpus median) becomes the corpus quantile at ``u``, linearly
    interpolated. The result's per-band distribution is the corpus's; its time course (which
    frame is louder than which) is the utterance's.
    """
    features = np.asarray(features_4TxF, np.float32)
    quantiles = np.asarray(quantiles_QxF, np.float32)
    if features.ndim != 2 or quantiles.ndim != 2 or quantiles.shape[1] != features.shape[1]:
        raise ValueError(f"features [4T, F] and quantiles [Q, F] must share F; got "
                         f"{features.shape} and {quantiles.shape}")
    if features.shape[0] == 0:
        return features.copy()
    levels = np.linspace(0.0, 1.0, quantiles.shape[0])
    out = np.empty_like(features)
    for band in range(features.shape[1]):       # band by band: an hour's ranks cost 3 MB
        ranks = (rankdata(features[:, band], method="average") - 0.5) / features.shape[0]
        out[:, band] = np.interp(ranks, levels, quantiles[:, band])
    return out
