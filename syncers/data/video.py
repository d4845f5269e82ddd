"""Video in and out through the ffmpeg binary bundled with imageio-ffmpeg (never the system's).

``read_video`` decodes any container ffmpeg knows and resamples it to a fixed frame rate by
nearest timestamp; ``write_video`` writes H.264 (yuv420p) mp4 with the audio muxed as AAC and the
video stretched or cut to the audio's length, so players never show a frozen or black tail.
``probe`` reports what ffmpeg sees in a file (tests and the CLI summary use it).

The encoder that ``video_writer`` starts dies with msync (Linux's parent-death signal): a killed
``msync generate`` leaves no ffmpeg behind still writing its partial file.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import fractions
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import warnings
from typing import Iterator

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
    audio_channels: str | None = None       # ffmpeg's layout name: mono, stereo, 5.1, ...

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


# prctl(PR_SET_PDEATHSIG, SIGKILL), looked up once here: the child calls it between fork and
# exec, where it must not import or allocate more than it can help.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) \
    if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    """In the child before exec: the kernel sends it SIGKILL when msync's thread ends."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


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
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+).*?(\d+) Hz, ([\w.()]+)", out)
    return VideoInfo(
        duration=(int(duration[1]) * 3600 + int(duration[2]) * 60 + float(duration[3]))
        if duration else float("nan"),
        fps=float(fps[1]) if fps else float("nan"),
        width=int(video[2]), height=int(video[3]), video_codec=video[1],
        audio_codec=audio[1] if audio else None,
        audio_sample_rate=int(audio[2]) if audio else None,
        audio_channels=audio[3] if audio else None)


def read_video(path: str | os.PathLike, fps: float = FPS) -> np.ndarray:
    """Decode ``path`` → frames ``[T, H, W, 3]`` uint8 RGB resampled to ``fps``
    (:func:`iter_frames`, all at once)."""
    frames = list(iter_frames(path, fps))
    if not frames:
        raise InputError(path, "video has no decodable frames")
    return np.stack(frames)


def iter_frames(path: str | os.PathLike, fps: float = FPS) -> Iterator[np.ndarray]:
    """Decode ``path`` frame by frame → ``[H, W, 3]`` uint8 RGB resampled to ``fps``, so a long
    or large video is never held in memory whole.

    Output frame ``i`` (time ``i/fps``) is the source frame nearest in time, so a clip keeps its
    duration whatever its native rate.
    """
    import imageio_ffmpeg

    if not os.path.isfile(path):
        raise InputError(path, "no such video file")
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
                yield frame
                i += 1
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        detail = str(err).strip().splitlines()
        raise InputError(path, "not a readable video"
                               + (f" ({detail[-1][:200]})" if detail else "")) from None


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = FPS,
                audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE) -> None:
    """Write ``frames [T, H, W, 3]`` (uint8, or float in [0, 1]) as H.264 yuv420p mp4.

    With ``audio`` (float32 mono ``[N]`` in [-1, 1]) it is muxed as AAC and the video is made as
    long as the audio: the last frame is repeated, or extra frames dropped. Odd sizes are padded
    by one replicated row/column because yuv420p needs even dimensions.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W, 3] with T > 0; got {tuple(frames.shape)}")
    n_frames = None
    if audio is not None:
        audio = np.asarray(audio, np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"audio must be mono [N] with N > 0; got {tuple(audio.shape)}")
        n_frames = max(1, math.ceil(audio.size / sample_rate * fps - 1e-6))
    with video_writer(path, frames.shape[2], frames.shape[1], fps, audio=audio,
                      sample_rate=sample_rate, n_frames=n_frames) as write:
        write(frames)


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, width: int, height: int, fps: float = FPS,
                 audio: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE,
                 audio_file: str | os.PathLike | None = None, n_frames: int | None = None):
    """Stream frames into an H.264 yuv420p mp4: yields ``write(frames [t, H, W, 3])`` (uint8 or
    float in [0, 1]), called as often as needed, so a long video never sits in memory.

    The sound is ``audio`` (float32 mono at ``sample_rate``, written as 16-bit PCM first) or
    ``audio_file``, any file with an audio stream ffmpeg reads, muxed at its own sample rate and
    channels (AAC). With ``n_frames`` the video is made exactly that long when it closes: the
    last frame repeated, or extra frames dropped. Odd sizes are padded by one replicated
    row/column (yuv420p needs even dimensions).
    """
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        sound = None if audio_file is None else os.fspath(audio_file)
        if audio is not None:
            sound = os.path.join(tmp, "audio.wav")
            soundfile.write(sound, np.clip(np.asarray(audio, np.float32), -1.0, 1.0),
                            sample_rate, subtype="PCM_16")
        rate = fractions.Fraction(fps).limit_denominator()
        command = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-vcodec", "rawvideo",
                   "-s", f"{width + width % 2}x{height + height % 2}", "-pix_fmt", "rgb24",
                   "-r", str(rate), "-i", "-"]
        if sound:
            command += ["-i", sound]
        command += ["-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "18",
                    "-movflags", "+faststart"]
        if sound:
            command += ["-acodec", "aac", "-map", "0:v:0", "-map", "1:a:0", "-b:a", "192k",
                        "-shortest"]
        log_path = os.path.join(tmp, "ffmpeg.log")
        with open(log_path, "wb") as log, _quiet_fork():
            encoder = subprocess.Popen(
                command + [os.fspath(path)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=log, preexec_fn=_die_with_parent if _LIBC is not None else None)
        finished = False

        def send(frame: np.ndarray) -> None:
            try:
                encoder.stdin.write(frame.tobytes())
            except BrokenPipeError:
                raise RuntimeError(f"ffmpeg stopped writing {os.fspath(path)}: "
                                   f"{_last_line(log_path)}") from None

        state = {"sent": 0, "last": None}

        def write(frames: np.ndarray) -> None:
            frames = np.asarray(frames)
            if frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
                raise ValueError(f"frames must be [t, {height}, {width}, 3]; got "
                                 f"{tuple(frames.shape)}")
            if frames.dtype != np.uint8:
                frames = (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            if height % 2 or width % 2:
                frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)),
                                mode="edge")
            for frame in frames:
                if n_frames is not None and state["sent"] >= n_frames:
                    return
                send(np.ascontiguousarray(frame))
                state["sent"] += 1
                state["last"] = frame

        try:
            yield write
            if n_frames is not None and state["last"] is not None:
                while state["sent"] < n_frames:
                    send(np.ascontiguousarray(state["last"]))
                    state["sent"] += 1
            finished = True
        finally:
            if finished:
                encoder.stdin.close()
                code = encoder.wait()
            else:                   # an error or a signal: stop it, never leave it writing
                encoder.kill()
                encoder.wait()
                code = 0
        if code != 0:
            raise RuntimeError(f"ffmpeg could not write {os.fspath(path)} (exit {code}): "
                               f"{_last_line(log_path)}")


def _last_line(log_path: str) -> str:
    with open(log_path, "rb") as log:
        lines = log.read().decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:200] if lines else "no message"
