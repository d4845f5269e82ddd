"""Video in and out through the ffmpeg binary bundled with imageio-ffmpeg (never the system's).

``read_video`` decodes any container ffmpeg knows and resamples it to a fixed frame rate by
nearest timestamp; ``write_video`` writes H.264 (yuv420p) mp4 with the audio muxed as AAC and the
video stretched or cut to the audio's length, so players never show a frozen or black tail.
``probe`` reports what ffmpeg sees in a file (tests and the CLI summary use it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import subprocess
import tempfile
import warnings

import numpy as np

from syncers.data.layout import FPS, SAMPLE_RATE
from syncers.run.errors import InputError


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What ``ffmpeg -i`` reports: container duration (s), video fps, codecs (None if absent)."""

    duration: float
    fps: float
    width: int
    height: int
    video_codec: str | None
    audio_codec: str | None
    audio_sample_rate: int | None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


@contextlib.contextmanager
def _quiet_fork():
    """Silence JAX's "os.fork() was called" warning around ffmpeg launches: subprocess forks and
    execs in C with no Python running in the child, so JAX's threads cannot deadlock it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called",
                                category=RuntimeWarning)
        yield


def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(path: str | os.PathLike) -> VideoInfo:
    """Parse ``ffmpeg -i`` for duration, fps, size and codecs of ``path``."""
    if not os.path.isfile(path):
        raise InputError(path, "no such video file")
    with _quiet_fork():
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", os.fspath(path)],
                             capture_output=True, text=True, errors="replace").stderr
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})", out)
    if video is None:
        raise InputError(path, "not a readable video (ffmpeg finds no video stream)")
    fps = re.search(r"([\d.]+) fps", out) or re.search(r"([\d.]+) tbr", out)
    duration = re.search(r"Duration: (\d+):(\d+):([\d.]+)", out)
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+).*?(\d+) Hz", out)
    return VideoInfo(
        duration=(int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]))
        if duration else float("nan"),
        fps=float(fps[1]) if fps else float("nan"),
        width=int(video[2]), height=int(video[3]), video_codec=video[1],
        audio_codec=audio[1] if audio else None,
        audio_sample_rate=int(audio[2]) if audio else None)


def read_video(path: str | os.PathLike, fps: float = FPS) -> np.ndarray:
    """Decode ``path`` → frames ``[T, H, W, 3]`` uint8 RGB resampled to ``fps``.

    Output frame ``i`` (time ``i/fps``) is the source frame nearest in time, so a clip keeps its
    duration whatever its native rate; frames are streamed, only the kept ones are stored.
    """
    import imageio_ffmpeg

    if not os.path.isfile(path):
        raise InputError(path, "no such video file")
    frames: list[np.ndarray] = []
    try:
        with _quiet_fork():
            reader = imageio_ffmpeg.read_frames(os.fspath(path))
            meta = next(reader)
            width, height = meta["size"]
            src_fps = float(meta.get("fps") or fps)
            ratio = src_fps / fps
            i = 0
            for j, raw in enumerate(reader):
                frame = np.frombuffer(raw, np.uint8).reshape(height, width, 3)
                while math.floor(i * ratio + 0.5) == j:   # output i takes source round(i·ratio)
                    frames.append(frame)
                    i += 1
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        detail = str(err).strip().splitlines()
        raise InputError(path, "not a readable video"
                               + (f" ({detail[-1][:200]})" if detail else "")) from None
    if not frames:
        raise InputError(path, "video has no decodable frames")
    return np.stack(frames)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = FPS,
                audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> None:
    """Write ``frames [T, H, W, 3]`` (uint8, or float in [0, 1]) as H.264 yuv420p mp4.

    With ``audio`` (float32 mono ``[N]`` in [-1, 1]) it is muxed as AAC and the video is made as
    long as the audio: the last frame is repeated, or extra frames dropped. Odd sizes are padded
    by one replicated row/column because yuv420p needs even dimensions.
    """
    import imageio_ffmpeg
    import soundfile

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W, 3] with T > 0; got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"audio must be mono [N] with N > 0; got {tuple(audio.shape)}")
        n = max(1, math.ceil(audio.size / sample_rate * fps - 1e-6))
        if n > len(frames):
            frames = np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])
        frames = frames[:n]
    with tempfile.TemporaryDirectory() as tmp:
        wav = None
        if audio is not None:
            wav = os.path.join(tmp, "audio.wav")
            soundfile.write(wav, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
        writer = imageio_ffmpeg.write_frames(
            os.fspath(path), (frames.shape[2], frames.shape[1]), fps=fps, codec="libx264",
            pix_fmt_out="yuv420p", macro_block_size=1, quality=None,
            output_params=["-crf", "18", "-movflags", "+faststart"]
            + (["-b:a", "128k", "-shortest"] if wav else []),
            audio_path=wav, audio_codec="aac" if wav else None, ffmpeg_log_level="error")
        with _quiet_fork():
            writer.send(None)                   # starts ffmpeg
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
