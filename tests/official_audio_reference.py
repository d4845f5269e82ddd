"""A numpy re-statement of the released MS-Sync model's audio front-end, for the tests
(LouisBearing/HMo-audio ``dataset/preprocess_audio.py``, ``get_audio_feature_from_audio(...,
style=1)``): ``scipy.io.wavfile`` reading, the channel choice, the official ffmpeg command line
for other rates, mean removal and peak normalisation, then ``python_speech_features.logfbank``
(v0.6: ``preemphasis``, ``framesig``, ``powspec``, ``get_filterbanks``) restated line for line.
"""
from __future__ import annotations

import decimal
import math
import os
import subprocess
import tempfile

import numpy as np
from scipy.io import wavfile


def _round_half_up(number):
    return int(decimal.Decimal(number).quantize(decimal.Decimal("1"),
                                                rounding=decimal.ROUND_HALF_UP))


def _framesig(sig, frame_len, frame_step):
    slen = len(sig)
    frame_len = int(_round_half_up(frame_len))
    frame_step = int(_round_half_up(frame_step))
    if slen <= frame_len:
        numframes = 1
    else:
        numframes = 1 + int(math.ceil((1.0 * slen - frame_len) / frame_step))
    padlen = int((numframes - 1) * frame_step + frame_len)
    padsignal = np.concatenate((sig, np.zeros((padlen - slen,))))
    indices = (np.tile(np.arange(0, frame_len), (numframes, 1))
               + np.tile(np.arange(0, numframes * frame_step, frame_step), (frame_len, 1)).T)
    return padsignal[indices.astype(np.int32)] * np.ones((frame_len,))


def _get_filterbanks(nfilt, nfft, samplerate):
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.)
    mel2hz = lambda mel: 700 * (10 ** (mel / 2595.0) - 1)
    melpoints = np.linspace(hz2mel(0), hz2mel(samplerate / 2), nfilt + 2)
    bin = np.floor((nfft + 1) * mel2hz(melpoints) / samplerate)
    fbank = np.zeros([nfilt, nfft // 2 + 1])
    for j in range(0, nfilt):
        for i in range(int(bin[j]), int(bin[j + 1])):
            fbank[j, i] = (i - bin[j]) / (bin[j + 1] - bin[j])
        for i in range(int(bin[j + 1]), int(bin[j + 2])):
            fbank[j, i] = (bin[j + 2] - i) / (bin[j + 2] - bin[j + 1])
    return fbank


def logfbank(signal, samplerate=16000, nfilt=26, nfft=512):
    signal = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    frames = _framesig(signal, 0.025 * samplerate, 0.01 * samplerate)
    pspec = 1.0 / nfft * np.square(np.absolute(np.fft.rfft(frames, nfft)))
    feat = np.dot(pspec, _get_filterbanks(nfilt, nfft, samplerate).T)
    feat = np.where(feat == 0, np.finfo(float).eps, feat)
    return np.log(feat)


def official_features(audio_path, ffmpeg: str) -> np.ndarray:
    """get_audio_feature_from_audio(dir, file, style=1)'s melbank ``[N, 26]`` float64; ``ffmpeg``
    is the executable the official ``os.system`` call would find."""
    sample_rate, audio = wavfile.read(audio_path)
    if sample_rate != 16000:
        with tempfile.TemporaryDirectory() as tmp:
            temp_audio = os.path.join(tmp, "temp.wav")
            subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(audio_path), "-async", "1",
                            "-ac", "1", "-vn", "-acodec", "pcm_s16le", "-ar", "16000",
                            temp_audio], check=True)
            sample_rate, audio = wavfile.read(temp_audio)
    if len(audio.shape) == 2:
        audio = audio[:, 1] if np.min(audio[:, 0]) <= 0 else audio[:, 0]
    audio = audio - np.mean(audio)
    audio = audio / np.max(np.abs(audio))
    return logfbank(audio, sample_rate, nfilt=26)
