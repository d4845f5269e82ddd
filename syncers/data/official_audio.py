"""The released MS-Sync model's audio front-end: ``preprocess_audio.py``'s style 1 (the
``melbank`` that ``execute_model.py`` feeds the model), as msync's feature kind ``"official"``
(docs/design.md, "Audio features" and "Released MS-Sync model").

Reading (:func:`read_samples`), as the official code reads a wav:
- a 16 kHz WAV is read as it is; with two or more channels one channel is kept — channel 1
  when channel 0 has any sample <= 0 (nearly always), else channel 0 — not a mix;
- any other rate is converted by ffmpeg as the official ``os.system`` call does (``-async 1
  -ac 1 -acodec pcm_s16le -ar 16000``: the channels averaged, swresample's default resampler,
  16-bit samples), here with the ffmpeg bundled by imageio-ffmpeg, piped instead of a temporary
  file. Inputs the official code cannot read (mp3, a video's audio track) take this path too.

Features (:func:`logfbank`), ``python_speech_features.logfbank(audio, 16000, nfilt=26)`` after
``audio − mean(audio)`` and ``/ max|audio|``, in float64:
- pre-emphasis ``y[n] = x[n] − 0.97·x[n−1]`` (``y[0] = x[0]``);
- frames of 400 samples (25 ms) every 160 (10 ms), a rectangular window, the last frame
  zero-padded: ``N = 1 + ceil((n − 400) / 160)`` rows (1 when n <= 400) — not 4 per video
  frame: the official inference maps them to video frames at 3.9943 rows per frame;
- power spectrum ``|rfft(frame, 512)|² / 512``;
- 26 triangular filters on FFT bins ``floor(513·f/16000)`` of 28 points evenly spaced in mel
  (``2595·log10(1 + f/700)``) over 0–8 kHz, each rising from 0 at its first point to 1 at its
  second and back to 0 at its third, unnormalised;
- the natural log of each filter's energy; an energy of exactly 0 becomes float64's eps first.
The result is cast to float32, as ``torch.Tensor(melspec)`` does.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from syncers.data.layout import MAX_INPUT_RATE, MIN_INPUT_RATE, SAMPLE_RATE
from syncers.run.errors import InputError

KIND = "official"
N_FILTERS = 26
WINDOW = 400                    # 25 ms
HOP = 160                       # 10 ms
N_FFT = 512
PREEMPHASIS = 0.97
FEATURE_CONFIG = {"kind": KIND, "n_bands": N_FILTERS, "sample_rate": SAMPLE_RATE, "hop": HOP,
                  "window": WINDOW, "n_fft": N_FFT, "rate_hz": SAMPLE_RATE // HOP,
                  "window_fn": "rectangular", "preemphasis": PREEMPHASIS,
                  "normalization": "mean removed, peak 1", "bands": "log filterbank",
                  "source": "HMo-audio dataset/preprocess_audio.py style 1"}


def read_samples(path: str | os.PathLike) -> np.ndarray:
    """``[n]`` float64 samples at 16 kHz, read as the official front-end reads a file (module
    docstring); :class:`InputError` naming the file when it is missing or holds no audio."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file" if not path.exists() else "not a file")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, ValueError):
        info = None
    if info is not None and not MIN_INPUT_RATE <= info.samplerate <= MAX_INPUT_RATE:
        raise InputError(path, f"sample rate {info.samplerate} Hz is outside the "
                               f"{MIN_INPUT_RATE}-{MAX_INPUT_RATE} Hz msync reads")
    as_is = info is not None and info.format == "WAV" and info.samplerate == SAMPLE_RATE
    if as_is:
        data, _ = soundfile.read(str(path), dtype="float64", always_2d=True)
        samples = data[:, 0]
        if data.shape[1] >= 2:
            samples = data[:, 1] if np.min(data[:, 0]) <= 0 else data[:, 0]
    else:
        samples = _ffmpeg_mono_16k(path)
    if samples.size == 0:
        raise InputError(path, "the audio is empty")
    if not np.all(np.isfinite(samples)):
        raise InputError(path, "the audio contains NaN or infinite samples")
    return np.ascontiguousarray(samples, np.float64)


def _ffmpeg_mono_16k(path: Path) -> np.ndarray:
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path),
               "-async", "1", "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", str(SAMPLE_RATE),
               "-f", "s16le", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        detail = message[-1] if message else f"ffmpeg exit code {result.returncode}"
        raise InputError(path, f"cannot decode audio ({detail})")
    return np.frombuffer(result.stdout, dtype="<i2").astype(np.float64)


def filterbank() -> np.ndarray:
    """The 26 triangular mel filters ``[26, 257]`` over the 512-point FFT's bins."""
    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    points = np.linspace(mel(0.0), mel(SAMPLE_RATE / 2), N_FILTERS + 2)
    hz = 700.0 * (10.0 ** (points / 2595.0) - 1.0)
    edges = np.floor((N_FFT + 1) * hz / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = np.arange(N_FFT // 2 + 1, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= lo) & (bins < mid), (bins - lo) / (mid - lo), 0.0)
        falling = np.where((bins >= mid) & (bins < hi), (hi - bins) / (hi - mid), 0.0)
    return rising + falling


def n_rows(n_samples: int) -> int:
    """Feature rows of ``n_samples`` (every 160 samples, the last frame zero-padded)."""
    return 1 if n_samples <= WINDOW else 1 + -(-(n_samples - WINDOW) // HOP)


def logfbank(samples: np.ndarray, source: str | os.PathLike | None = None) -> np.ndarray:
    """``[n]`` samples at 16 kHz → ``[N, 26]`` float32 log filterbank energies (module
    docstring), after mean removal and peak normalisation. Silence is an :class:`InputError`
    (the official code divides by a zero peak)."""
    x = np.asarray(samples, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"samples must be 1-D and non-empty; got shape {x.shape}")
    x = x - np.mean(x)
    peak = np.max(np.abs(x))
    if not peak > 0:
        raise InputError(source, "the audio is silent (every sample equal): the official "
                                 "front-end normalises by the peak")
    x = x / peak
    x = np.concatenate([x[:1], x[1:] - PREEMPHASIS * x[:-1]])
    rows = n_rows(x.size)
    padded = np.zeros((rows - 1) * HOP + WINDOW)
    padded[:x.size] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::HOP]
    power = np.square(np.abs(np.fft.rfft(frames, N_FFT))) / N_FFT
    energy = power @ filterbank().T
    energy = np.where(energy == 0, np.finfo(np.float64).eps, energy)
    return np.log(energy).astype(np.float32)
