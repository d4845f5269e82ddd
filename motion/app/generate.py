"""``msync generate`` (:func:`generate_command`): a face image and a speech recording → a
talking-head mp4 (H.264 + AAC, 25 fps) through the one pipeline, ``motion.talking_head`` (face
crop → x0 → keypoints for the whole audio → frames). :func:`generate_video` is the command
without its argument parsing: the page calls it. A model and a renderer must share a keypoint
space (docs/design.md, "Keypoint spaces"). With no ``--model`` the bundled demo model
(``motion/assets/demo_model``) is used; with no ``--image`` / ``--audio`` the astronaut
photograph that scikit-image ships and six seconds of real speech shipped with msync
(``motion/assets/speech.flac``). With ``--keypoints`` the keypoints are read instead of
generated (a dataset clip's motion, moved onto the source face by :func:`move_onto_source`) and
drawn by the same renderer, so a clip's recorded and generated motion can be compared.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from skimage import data as skimage_data

from motion import talking_head
from motion.generate import remove_drift
from motion.generator import N_KEYPOINTS
from motion.saved_model import long_rollout_warning
from motion.source import relative_transfer
from motion.talking_head import BUNDLED_SPEECH, GenerationOptions, TalkingHeadModel
from render import composite
from render.fomm import load as load_fomm
from syncers.data import face
from syncers.data.features import SAMPLE_RATE, Speech, n_video_frames, open_speech
from syncers.data.layout import FPS
from syncers.data.video import video_writer
from syncers.run import compile_cache, progress
from syncers.run.errors import InputError, warn
from syncers.run.outputs import check_output, published

MIN_AUDIO_SECONDS = 0.5        # a couple of syllables; shorter clips give no visible motion


def demo_image() -> np.ndarray:
    """The bundled face: scikit-image's astronaut photograph ``[512, 512, 3]`` float32 in [0, 1]."""
    return skimage_data.astronaut().astype(np.float32) / 255.0


def options_from_args(args: Any) -> GenerationOptions:
    """The generation options of ``msync generate`` / ``msync stream``'s shared flags
    (``motion.app.cli.add_generation_options``), validated."""
    return GenerationOptions(
        head_scale=args.head_scale, lip_scale=args.lip_scale, mouth=args.mouth,
        audio_normalization=args.audio_normalization, drift_window_s=args.drift_window,
        renderer=args.renderer, crop=not args.no_crop, crop_scale=args.crop_scale,
        size=args.size, blinks=not args.no_blinks, blink_seed=args.blink_seed,
        full_frame=getattr(args, "full_frame", False)).validate()


def warn_options(model: TalkingHeadModel, options: GenerationOptions, generated: bool) -> None:
    """Warnings once every input is accepted (bad input stays one line): scales outside their
    safe range, a model whose long rollouts drift or were never checked."""
    for flag, message in options.motion_scale_warnings():
        warn(flag, message)
    drift_warning = long_rollout_warning(model.path, model.info, model.path) if generated \
        else None
    if drift_warning:
        warn(None, drift_warning)


@dataclasses.dataclass(frozen=True)
class GeneratedVideo:
    """What :func:`generate_video` made: ``keypoints [T, 10, 6]`` (crop coordinates; T frames,
    ``seconds`` of speech), the resolved ``options``, and the seconds spent generating and
    rendering (both with JIT compilation)."""

    keypoints: np.ndarray
    seconds: float
    options: GenerationOptions
    generate_s: float
    render_s: float

    @property
    def n_frames(self) -> int:
        return int(self.keypoints.shape[0])


def generate_video(model: TalkingHeadModel, image: np.ndarray, speech: Speech,
                   options: GenerationOptions, out: Path, *, image_name: str | None = None,
                   keypoints_out: Path | None = None, fomm=None, given: np.ndarray | None = None,
                   given_name: str | None = None) -> GeneratedVideo:
    """Photo ``image [H, W, 3]`` + ``speech`` (``syncers.data.features.open_speech``: a long
    file is read a block at a time, never held) → the mp4 ``out`` (and the keypoints npz
    ``keypoints_out``) with resolved ``options``; the sound is ``speech.path``'s own when it has
    a file. ``given [T', 10, 6]``: recorded keypoints (``given_name`` names them) drawn
    instead of generated ones. Bad input raises ``InputError``."""
    seconds = speech.seconds
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError(speech.path, f"the audio is {seconds:.2f} s long; msync generate "
                                      f"needs at least {MIN_AUDIO_SECONDS:g} s of speech")
    source = talking_head.prepare(model, image, options, fomm, image_name)
    n_frames = n_video_frames(speech.n_samples)
    if given is not None and len(given) < n_frames:
        raise InputError(given_name, f"--keypoints: {len(given)} frames "
                                     f"({len(given) / FPS:.2f} s) do not cover the audio's "
                                     f"{n_frames} ({seconds:.2f} s)")
    warn_options(model, options, given is None)
    started = time.perf_counter()
    with progress.bar(n_frames, "generate" if given is None else "keypoints", "frame") as bar:
        if given is None:
            keypoints = talking_head.keypoints(model, source, speech, options)
        else:
            moved = move_onto_source(given[:n_frames], source.x0)
            # recorded motion is drawn as recorded unless a drift window is asked for
            keypoints = source.to_image(remove_drift(moved, round(options.drift_window_s * FPS)))
        bar.update(n_frames)
    generate_s = time.perf_counter() - started
    started = time.perf_counter()
    with published(out) as partial:
        chunks = talking_head.frames(source, keypoints, options, fomm)
        frame_size = source.size
        if options.full_frame:
            # one frame at a time: a chunk of a 6000x4000 photo's frames is GBs of float32
            chunks = (composite.paste(image, chunk[i:i + 1], source.crop.box)
                      for chunk in chunks for i in range(len(chunk)))
            frame_size = composite.even_shape(*image.shape[:2])
        write_frames(partial, chunks, len(keypoints), frame_size, speech)
    render_s = time.perf_counter() - started
    if keypoints_out is not None:
        with published(keypoints_out) as partial, open(partial, "wb") as handle:
            np.savez(handle, keypoints=keypoints.astype(np.float32), fps=np.float32(FPS),
                     keypoint_space=np.array(model.keypoint_space))
    return GeneratedVideo(keypoints, seconds, options, generate_s, render_s)


def write_frames(path: Path, chunks, n_frames: int, size: int | tuple[int, int],
                 speech: Speech) -> None:
    """Stream rendered chunks into the mp4 at ``path`` with a progress bar (memory flat in the
    video's length); the sound is the speech's file's own (its rate and channels) when it has
    one (the bundled utterance is ``motion/assets/speech.flac``), else its held samples."""
    n_out = max(1, math.ceil(speech.n_samples / SAMPLE_RATE * FPS - 1e-6))
    height, width = size if isinstance(size, tuple) else (size, size)       # tuple: whole photo
    with progress.bar(n_frames, "render", "frame") as bar, \
            video_writer(path, width, height, FPS,
                         audio=None if speech.path else speech.all(), audio_file=speech.path,
                         n_frames=n_out) as write:
        for chunk in chunks:
            write(chunk)
            bar.update(len(chunk))


def read_keypoints(path: str) -> np.ndarray:
    """``--keypoints``: the ``keypoints [T, 10, 6]`` array of an npz (a dataset clip or a
    ``--keypoints-out`` file), float32 and finite; anything else is one line."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "keypoints" not in npz.files:
                raise InputError(path, f"--keypoints: the npz holds no 'keypoints' array (it "
                                       f"has {', '.join(npz.files) or 'nothing'})")
            keypoints = np.asarray(npz["keypoints"], np.float32)
    except (OSError, ValueError) as err:
        raise InputError(path, f"--keypoints: not a readable npz ({err})") from None
    if keypoints.ndim != 3 or keypoints.shape[1:] != (N_KEYPOINTS, 6) or not len(keypoints):
        raise InputError(path, f"--keypoints: keypoints must be [T, {N_KEYPOINTS}, 6] with T >= 1; "
                               f"got {list(keypoints.shape)}")
    if not np.all(np.isfinite(keypoints)):
        raise InputError(path, "--keypoints: the keypoints hold NaN or infinite values")
    return keypoints


def move_onto_source(keypoints_Tx10x6: np.ndarray, x0_Kx6: np.ndarray) -> np.ndarray:
    """Given keypoints' motion from their own first frame, applied to the source pose ``x0``:
    ``[T, 10, 6]`` with frame 0 = x0, by FOMM's relative rule (``motion.source.
    relative_transfer``), so a clip recorded elsewhere in its frame moves the source face where
    it is."""
    keypoints = np.asarray(keypoints_Tx10x6, np.float32)
    return relative_transfer(x0_Kx6, keypoints[0], 1.0)[1](keypoints)


def _output_path(path: str | None, suffix: str, flag: str, inputs) -> Path | None:
    if path is None:
        return None
    if Path(path).suffix.lower() != suffix:
        raise InputError(path, f"{flag} must name a {suffix} file")
    return check_output(path, inputs, flag)


def generate_command(args: Any) -> None:
    """``msync generate``: image + speech → talking-head mp4 (see the module docstring).

    Every input is checked before the long work starts; bad ones raise ``InputError`` (one
    line, exit 2). Prints a one-line summary with frames, seconds and the frames/s of
    generation and of rendering.
    """
    command_started = time.perf_counter()
    compiled_before = compile_cache.compile_counts()["compiled"]
    options = options_from_args(args)
    given_path = getattr(args, "keypoints", None)
    if given_path is not None and (args.head_scale != 1 or args.lip_scale != 1):
        raise InputError(None, "--head-scale and --lip-scale scale generated motion; with "
                               "--keypoints nothing is generated — drop them")
    inputs = (args.image, args.audio, args.model, given_path)
    out = _output_path(args.out, ".mp4", "--out", inputs)
    keypoints_out = _output_path(getattr(args, "keypoints_out", None), ".npz", "--keypoints-out",
                                 inputs + (args.out,))
    given = read_keypoints(given_path) if given_path is not None else None
    fomm_checkpoint = getattr(args, "fomm_checkpoint", None)
    model = talking_head.load(args.model)
    if given is not None and options.drift_window_s is None:
        # The model's window corrects its own rollouts; recorded motion is drawn as recorded.
        options = dataclasses.replace(options, drift_window_s=0.0)
    options = talking_head.resolve(model, options, with_fomm=bool(fomm_checkpoint))
    image = face.load_image(args.image) if args.image else demo_image()
    audio_path = args.audio or os.fspath(BUNDLED_SPEECH)
    speech = open_speech(audio_path)
    fomm = load_checked_fomm(fomm_checkpoint) if fomm_checkpoint else None
    made = generate_video(model, image, speech, options, out,
                          image_name=args.image or "astronaut (bundled)",
                          keypoints_out=keypoints_out, fomm=fomm, given=given,
                          given_name=given_path)
    motion_from = f"keypoints of {given_path}" if given is not None else \
        f"{model.keypoint_space} model"
    matched = options.audio_normalization == "corpus"
    n_frames = made.n_frames
    n_compiled = compile_cache.compile_counts()["compiled"] - compiled_before
    compiled = f"both with JIT compilation ({n_compiled} programs)" if n_compiled else \
        "nothing compiled (programs from the cache)"
    print(f"msync generate: {n_frames} frames ({made.seconds:.2f} s of audio, "
          f"{options.renderer} renderer, {motion_from}, "
          + ("" if given is not None else
             f"audio {'matched to its corpus' if matched else 'as is'}, ")
          + f"drift window {options.drift_window_s:g} s) -> {out}; generation "
          f"{made.generate_s:.1f} s ({n_frames / max(made.generate_s, 1e-9):.0f} frames/s), "
          f"rendering {made.render_s:.1f} s ({n_frames / max(made.render_s, 1e-9):.0f} "
          f"frames/s), {compiled}; total "
          f"{time.perf_counter() - command_started:.1f} s")


def load_checked_fomm(checkpoint: str):
    """FOMM's weights, refused unless they move as many keypoints as msync's generator."""
    fomm = load_fomm(checkpoint)
    if fomm.config.generator.num_kp != N_KEYPOINTS:
        raise InputError(checkpoint, f"the FOMM model has {fomm.config.generator.num_kp} "
                                     f"keypoints; msync's generator moves {N_KEYPOINTS}")
    return fomm
