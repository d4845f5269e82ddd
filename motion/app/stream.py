"""``msync stream`` (:func:`stream_command`): speech arriving live → talking-head frames written
as soon as they are determined (``motion.stream``; docs/design.md, "Streaming and the web page").

The speech is 16-bit little-endian mono PCM on stdin (``--sample-rate``, default 16000), or
``--audio FILE`` fed in real time (paced by the wall clock, as a microphone would). Frames go to
an mp4 (H.264, with the speech as AAC, written when the stream ends) or, with ``--out -``, as raw
RGB24 frames (``S×S×3`` bytes each, 25 per second of speech) on stdout, flushed as they come, for
``ffmpeg -f rawvideo -pixel_format rgb24 -video_size 256x256 -framerate 25 -i -``.
``--verbose`` prints each chunk's compute time and its frames' latency to stderr. ``--latency
low`` streams the bundled low-latency model (``motion.talking_head.load``). The model, the
crop, the renderer, the scales, the corpus matching and the drift window are ``msync
generate``'s: the same flags (``motion.app.cli.add_generation_options``), the same ranges and
the same pipeline (``motion.talking_head``); corpus matching is the streaming approximation
(``motion.stream.RunningMatch``).
"""
from __future__ import annotations

import collections
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from motion import talking_head
from motion.app import generate as app_gen
from motion.stream import Streamer, StreamFrame
from motion.talking_head import GenerationOptions, TalkingHeadModel
from syncers.data import face
from syncers.data.features import load_audio
from syncers.data.layout import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME
from syncers.data.video import _quiet_fork, ffmpeg_exe, video_writer
from syncers.run.errors import InputError, warn
from syncers.run.outputs import check_output, published

MAX_SAMPLE_RATE = 384_000


def _check_flags(args: Any) -> None:
    if not 1000 <= args.sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(None, f"--sample-rate must be 1000..{MAX_SAMPLE_RATE} Hz; got "
                               f"{args.sample_rate}")
    if not (np.isfinite(args.chunk_ms) and 1 <= args.chunk_ms <= 10_000):
        raise InputError(None, f"--chunk-ms must be 1..10000; got {args.chunk_ms}")


def build_streamer(model: TalkingHeadModel, image: np.ndarray, options: GenerationOptions,
                   image_name: str | None = None) -> Streamer:
    """A compiled :class:`Streamer` for ``image`` with resolved ``options``
    (``motion.talking_head.streamer``); bad choices raise InputError."""
    source = talking_head.prepare(model, image, options, image_name=image_name)
    streamer = talking_head.streamer(model, source, options)
    streamer.compile()
    return streamer


class StdinChunks:
    """16-bit little-endian PCM from a binary ``stream``: iterating gives ``(int16 array, time
    read)``, each as soon as it is read (at most ``chunk_bytes``); an odd byte is held for the
    next read. Nothing at all raises InputError naming stdin; a torn last sample does not stop
    the stream — every frame the complete samples determine still goes out — and
    :meth:`check_complete`, called once the output is written, raises it then."""

    def __init__(self, stream, chunk_bytes: int):
        self.stream, self.chunk_bytes = stream, chunk_bytes
        self.total = 0                   # bytes read
        self.stray = 0                   # bytes after the last whole sample

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        held = b""
        fd = self.stream.fileno()
        while True:
            data = os.read(fd, self.chunk_bytes)
            if not data:
                break
            self.total += len(data)
            data = held + data
            whole = len(data) // 2 * 2
            held = data[whole:]
            if whole:
                yield np.frombuffer(data[:whole], "<i2"), time.perf_counter()
        self.stray = len(held)
        if self.total == 0:
            raise InputError("stdin", "no audio came in: pipe 16-bit little-endian mono PCM "
                                      "into msync stream, or pass --audio FILE")

    def check_complete(self) -> None:
        if self.stray:
            raise InputError("stdin", f"ends in the middle of a 16-bit sample ({self.total} "
                                      f"bytes in all; the frames of the complete samples were "
                                      f"written): expected 16-bit little-endian mono PCM")


def file_chunks(samples: np.ndarray, chunk: int, clock: Callable[[], float] = time.perf_counter,
                sleep: Callable[[float], None] = time.sleep
                ) -> Iterator[tuple[np.ndarray, float]]:
    """``samples`` (16 kHz) in chunks of ``chunk``: ``(chunk, time its last sample was
    spoken)``, each given no earlier than then (the wall clock from the first call on), as a
    live source gives them; late when the consumer is behind, with the time it was due."""
    started = clock()
    for begin in range(0, samples.size, chunk):
        part = samples[begin:begin + chunk]
        spoken = started + (begin + part.size) / SAMPLE_RATE
        wait = spoken - clock()
        if wait > 0:
            sleep(wait)
        yield part, spoken


class Latency:
    """When each frame's audio was spoken, for the frame latency: frame i's audio ends at
    sample 640 (i+1); its latency is the time it went out minus the time that sample was spoken
    (a file: its real-time schedule; stdin: when it was read). Frames flushed by ``close`` are
    not counted: they wait for the end of the stream, not for their look-ahead."""

    def __init__(self):
        self._arrivals = collections.deque()          # (16 kHz samples in so far, time)
        self.frames: list[float] = []                 # latency of every frame, seconds

    def arrived(self, samples_in: int, when: float) -> None:
        self._arrivals.append((samples_in, when))

    def out(self, frames: list[StreamFrame], when: float) -> None:
        for frame in frames:
            end = SAMPLES_PER_FRAME * (frame.index + 1)
            while len(self._arrivals) > 1 and self._arrivals[1][0] < end:
                self._arrivals.popleft()        # only later frames remain: drop the past
            arrived = next((t for n, t in self._arrivals if n >= end), when)
            self.frames.append(when - arrived)


def _percentile(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _mux(video: Path, sound: Path, out: Path) -> None:
    """Copy ``video``'s H.264 stream and encode ``sound`` as AAC into ``out``."""
    command = [ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", os.fspath(video), "-i",
               os.fspath(sound), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac",
               "-b:a", "192k", "-movflags", "+faststart", "-f", "mp4", os.fspath(out)]
    with _quiet_fork():
        result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ffmpeg could not mux the stream: "
                           f"{result.stderr.decode(errors='replace').strip()[-300:]}")


def stream_command(args: Any) -> None:
    """``msync stream`` (module docstring). One summary line on stderr at the end."""
    options = app_gen.options_from_args(args)
    _check_flags(args)
    raw = args.out == "-"
    out = None
    if not raw:
        if Path(args.out).suffix.lower() != ".mp4":
            raise InputError(args.out, "--out must name a .mp4 file, or be - for raw RGB "
                                       "frames on stdout")
        out = check_output(args.out, (args.image, args.audio, args.model), "--out")
    if args.audio is None and sys.stdin.isatty():
        raise InputError("stdin", "is a terminal: pipe 16-bit little-endian mono PCM into "
                                  "msync stream, or pass --audio FILE")
    if raw and sys.stdout.isatty():
        raise InputError("--out -", "stdout is a terminal; pipe the raw frames into a program "
                                    "(ffmpeg, ffplay) or write an mp4")
    image = face.load_image(args.image)
    model = talking_head.load(args.model, getattr(args, "latency", None))
    options = talking_head.resolve(model, options)
    streamer = build_streamer(model, image, options, args.image)
    for flag, message in options.motion_scale_warnings():     # the inputs are accepted
        warn(flag, message)
    if args.audio is not None:
        samples = load_audio(args.audio)
        rate = SAMPLE_RATE
        chunks = file_chunks(samples, max(1, round(args.chunk_ms * SAMPLE_RATE / 1000)))
    else:
        rate = args.sample_rate
        chunks = StdinChunks(sys.stdin.buffer, 2 * max(1, round(args.chunk_ms * rate / 1000)))
    delay_ms = streamer.delay_frames * 1000 / FPS + 7.5
    if args.verbose:
        print(f"msync stream: {streamer.size}x{streamer.size} RGB frames at {FPS} fps, "
              f"{options.renderer} renderer; look-ahead {streamer.delay_frames} frames "
              f"({delay_ms:.0f} ms)", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        sink = _RawSink(sys.stdout.buffer) if raw else _Mp4Sink(Path(tmp), streamer.size, rate)
        try:
            summary = _run(streamer, chunks, rate, sink, args.verbose)
            if summary["frames"] == 0:
                raise InputError(args.audio or "stdin",
                                 f"less than one 40 ms video frame of audio "
                                 f"({summary['samples']} samples at 16 kHz)")
            if not raw:
                with published(out) as partial:
                    sink.finish(partial, args.audio)
        except BrokenPipeError:
            # the reader went away (ffplay closed): stop quietly, as `head` would
            sys.stderr.write("msync stream: the output pipe closed; stopped\n")
            return
        finally:
            sink.close()
    if isinstance(chunks, StdinChunks):
        chunks.check_complete()           # after every frame of the complete samples
    lat = summary["latency"]
    matched = "matched to its corpus as it came" if streamer.match is not None else "as is"
    print(f"msync stream: {summary['frames']} frames ({summary['seconds']:.2f} s of audio, "
          f"{options.renderer} renderer, {model.keypoint_space} model, audio "
          f"{matched}, drift window "
          f"{options.drift_window_s:g} s) -> {args.out if raw else out}; look-ahead "
          f"{streamer.delay_frames} frames ({delay_ms:.0f} ms); per chunk compute "
          f"p50 {summary['compute_p50'] * 1e3:.1f} ms, p95 {summary['compute_p95'] * 1e3:.1f} ms; "
          f"frame latency p50 {_percentile(lat, 50) * 1e3:.0f} ms, p95 "
          f"{_percentile(lat, 95) * 1e3:.0f} ms", file=sys.stderr)


def _run(streamer: Streamer, chunks, rate: int, sink, verbose: bool) -> dict:
    """Push every chunk, hand frames to ``sink`` as they come; the figures of the summary."""
    latency = Latency()
    compute = []
    n_frames = 0
    for i, (chunk, spoken) in enumerate(chunks):
        started = time.perf_counter()
        frames = streamer.push(chunk, rate)
        latency.arrived(streamer.samples_in, spoken)
        compute.append(time.perf_counter() - started)
        if frames:
            sink.write(frames)
            latency.out(frames, time.perf_counter())
            n_frames += len(frames)
        if verbose:
            last = latency.frames[-len(frames):] if frames else []
            print(f"msync stream: chunk {i}: {len(chunk)} samples, {len(frames)} frames out "
                  f"({n_frames} in all), compute {compute[-1] * 1e3:.1f} ms"
                  + (f", frame latency {max(last) * 1e3:.0f} ms" if last else ""),
                  file=sys.stderr, flush=True)
        sink.audio(chunk, rate)
    frames = streamer.close()
    if frames:
        sink.write(frames)
        n_frames += len(frames)
    return {"frames": n_frames, "samples": streamer.samples_in,
            "seconds": streamer.samples_in / SAMPLE_RATE, "latency": latency.frames,
            "compute_p50": _percentile(compute, 50), "compute_p95": _percentile(compute, 95)}


class _RawSink:
    """Raw RGB24 frames on a binary stream, flushed after every push."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, frames: list[StreamFrame]) -> None:
        for frame in frames:
            self.stream.write(np.ascontiguousarray(frame.image).tobytes())
        self.stream.flush()

    def audio(self, chunk, rate) -> None:
        pass

    def close(self) -> None:
        pass


class _Mp4Sink:
    """Frames into a video-only H.264 file as they come and the speech into a wav; at the end
    both muxed into the mp4 (the video one frame per started 40 ms of speech, as ``msync
    generate`` makes it)."""

    def __init__(self, folder: Path, size: int, rate: int):
        import soundfile  # the wav of the speech, only for an mp4 output

        self.video_path, self.sound_path = folder / "video.mp4", folder / "speech.wav"
        self._writer_cm = video_writer(self.video_path, size, size, FPS)
        self._write = self._writer_cm.__enter__()
        self._sound = soundfile.SoundFile(self.sound_path, "w", samplerate=rate, channels=1,
                                          subtype="PCM_16")
        self._samples = 0
        self._rate = rate
        self._frames = 0
        self._last = None

    def write(self, frames: list[StreamFrame]) -> None:
        images = np.stack([frame.image for frame in frames])
        self._write(images)
        self._frames += len(frames)
        self._last = images[-1:]

    def audio(self, chunk, rate) -> None:
        chunk = np.asarray(chunk)
        data = chunk.astype(np.float32) / 32768.0 if chunk.dtype == np.int16 else chunk
        self._sound.write(np.clip(data, -1.0, 1.0))
        self._samples += chunk.shape[0]

    def finish(self, out: Path, audio_file: str | None) -> None:
        wanted = max(1, math.ceil(self._samples / self._rate * FPS - 1e-6))
        while self._frames < wanted and self._last is not None:
            self._write(self._last)
            self._frames += 1
        self.close()
        _mux(self.video_path, Path(audio_file) if audio_file else self.sound_path, out)

    def close(self) -> None:
        """Stop ffmpeg and close the wav (once; also when the stream failed)."""
        if self._writer_cm is not None:
            writer, self._writer_cm = self._writer_cm, None
            writer.__exit__(None, None, None)
            self._sound.close()
