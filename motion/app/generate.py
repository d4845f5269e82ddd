"""``msync generate`` (:func:`generate_command`) wraps ``motion.generate`` for a person with an
image and a wav: face crop → x0 (dlib's 68 landmarks on the crop for a ``landmarks-v1`` model,
the FOMM KPDetector with ``--fomm-checkpoint``, the phantom template on the face box for a
phantom model) → keypoints for the whole audio → frames (FOMM, else the weight-free warp) →
H.264 + AAC mp4 at 25 fps. A model and a renderer must share a keypoint
space (docs/design.md, "Keypoint spaces"). With no ``--model`` the bundled demo model
(``motion/assets/demo_model``) is used; with no ``--image`` / ``--audio`` the astronaut
photograph that scikit-image ships and six seconds of real speech shipped with msync
(``motion/assets/speech.flac``). With ``--keypoints`` the keypoints are read instead of
generated (a dataset clip's motion, moved onto the source face by :func:`move_onto_source`) and
drawn by the same renderer, so a clip's recorded and generated motion can be compared.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from skimage import data as skimage_data

from motion.articulation import articulate
from motion.generate import generate, match_features, remove_drift
from motion.generator import N_KEYPOINTS
from motion.model import GeneratorModel
from motion.saved_model import (META, PARAMS, load_model, long_rollout_warning,
                                model_articulation)
# x0 and the crop map are shared with the streaming API (``motion.stream``)
from motion.source import FOMM_SIZE, relative_transfer, source_landmarks
from motion.source import source_keypoints as _source_keypoints
from render import mesh
from syncers.data import face
from render.fomm import load as load_fomm
from render.keypoints import split
from syncers.data.video import video_writer
from render.warp import render_chunks
from syncers.data.features import (SAMPLE_RATE, feature_config, file_features,
                                   n_video_frames)
from syncers.data.layout import FPS, LANDMARK_SPACE, PHANTOM_SPACE
from syncers.run import progress
from syncers.run.errors import InputError, warn
from syncers.run.outputs import check_output, published

DEFAULT_CROP_SCALE = 1.8      # crop side / face box side: the whole head with some margin
MIN_CROP_SCALE, MAX_CROP_SCALE = 1.2, 4.0
MIN_AUDIO_SECONDS = 0.5        # a couple of syllables; shorter clips give no visible motion
MAX_MOTION_SCALE = 10.0        # --head-scale, --lip-scale: ten times the trained motion
# Beyond twice the trained motion, lips overshoot their range and heads swing out of the crop
# (the renderers clamp what folds over); allowed up to MAX_MOTION_SCALE, with a warning.
SAFE_MOTION_SCALE = 2.0
MAX_DRIFT_WINDOW_S = 600.0     # --drift-window: ten minutes
ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_MODEL_DIR = ASSETS / "demo_model"
# Six seconds of a US presidential address (public domain in the US; motion/assets/README.md).
BUNDLED_SPEECH = ASSETS / "speech.flac"
AUDIO_NORMALIZATIONS = ("corpus", "none")


def demo_image() -> np.ndarray:
    """The bundled face: scikit-image's astronaut photograph ``[512, 512, 3]`` float32 in [0, 1]."""
    return skimage_data.astronaut().astype(np.float32) / 255.0


def default_renderer(keypoint_space: str, fomm_checkpoint: str | None) -> str:
    """The renderer of a keypoint space: FOMM with a checkpoint, the mesh for ``landmarks-v1``,
    the warp otherwise (a FOMM-space model without a checkpoint is then refused, saying so)."""
    if fomm_checkpoint:
        return "fomm"
    return "mesh" if keypoint_space == LANDMARK_SPACE else "warp"


def check_pairing(keypoint_space: str, renderer: str, fomm_checkpoint: str | None,
                  model_name: str) -> None:
    """Refuse a model/renderer pair from different keypoint spaces (docs/design.md,
    "Keypoint spaces")."""
    if renderer == "fomm" and not fomm_checkpoint:
        raise InputError(None, "--renderer fomm needs --fomm-checkpoint PTH (the FOMM vox-256 "
                               "weights); without one use --renderer mesh or warp")
    if keypoint_space.startswith("fomm"):
        if renderer != "fomm":
            fix = f"drop --renderer {renderer}" if fomm_checkpoint else \
                "pass --fomm-checkpoint PTH"
            raise InputError(model_name, f"this model moves FOMM keypoints ({keypoint_space}); "
                                         f"the {renderer} renderer cannot draw them — {fix} to "
                                         "render it with FOMM")
    elif keypoint_space in (PHANTOM_SPACE, LANDMARK_SPACE):
        if renderer == "fomm" or fomm_checkpoint:
            raise InputError(model_name, f"this model moves {keypoint_space} keypoints; FOMM "
                                         "cannot draw them — drop --fomm-checkpoint/--renderer "
                                         "fomm")
        if renderer == "mesh" and keypoint_space != LANDMARK_SPACE:
            raise InputError(model_name, f"the mesh renderer draws {LANDMARK_SPACE} keypoints "
                                         f"(68 landmarks); this model moves {keypoint_space} "
                                         "keypoints — use --renderer warp")
    else:
        raise InputError(model_name, f"unknown keypoint space {keypoint_space!r}: neither FOMM "
                                     f"(fomm-*), {LANDMARK_SPACE} nor {PHANTOM_SPACE}, so no "
                                     "renderer can draw it")


def _load_generator(path: str | None) -> tuple[GeneratorModel, dict, str]:
    """``(model, info, name)`` from ``--model`` or the bundled demo model."""
    if path is None:
        if not ((DEMO_MODEL_DIR / META).is_file() and (DEMO_MODEL_DIR / PARAMS).is_file()):
            raise InputError(None, f"no bundled demo model is installed (looked in "
                                   f"{DEMO_MODEL_DIR}); pass --model RUN (a directory from "
                                   "`msync train generator`)")
        path = os.fspath(DEMO_MODEL_DIR)
    model, info = load_model(path)
    return model, info, os.fspath(path)


def _feature_kind(info: dict, model: GeneratorModel, name: str) -> str:
    """The feature kind a model was trained on; anything this msync cannot compute is refused."""
    recorded = info.get("features") or {}
    kind = recorded.get("kind", "logmel")
    if kind not in ("logmel", "mfcc", "official"):
        raise InputError(name, f"model.json: unknown audio feature kind {kind!r}")
    expected = feature_config(kind)
    bad = {k: v for k, v in recorded.items() if k in expected and v != expected[k]}
    if bad or model.config.audio_features != expected["n_bands"]:
        raise InputError(name, f"model.json: the model's audio features {bad or recorded} differ "
                               f"from what msync computes ({expected})")
    return kind


def _corpus_quantiles(info: dict, normalization: str | None, name: str) -> np.ndarray | None:
    """The per-band corpus quantiles ``[Q, F]`` to match features onto, or None: ``none``, or a
    model that records none (older models) with ``--audio-normalization`` left unset."""
    stats = info.get("feature_stats")
    if normalization == "none" or (stats is None and normalization is None):
        return None
    if stats is None:
        raise InputError(name, "--audio-normalization corpus: this model's model.json records no "
                               "feature_stats (models exported before them); use "
                               "--audio-normalization none")
    return np.asarray(stats["quantiles"], np.float32)


def warn_motion_scales(head_scale: float, lip_scale: float) -> None:
    """One warning line per scale outside the safe 0 to ``SAFE_MOTION_SCALE`` (the hard limits
    are checked before)."""
    for flag, value in (("--head-scale", head_scale), ("--lip-scale", lip_scale)):
        if not 0 <= value <= SAFE_MOTION_SCALE:
            warn(flag, f"{value:g} is outside the safe range 0 to {SAFE_MOTION_SCALE:g} (1 = as "
                       "trained): the motion may leave the face's natural range; going on")


def _frame_chunks(renderer: str, crop, x0_Kx6, keypoints_Tx10x6, fomm, points=None):
    """Frames in chunks ``[n, S, S, 3]`` float in [0, 1], in order, from the chosen renderer
    (``points``: the source's landmarks ``[68, 2]``, which the mesh renderer needs)."""
    if renderer == "warp":
        return render_chunks(crop.image, x0_Kx6, keypoints_Tx10x6)
    if renderer == "mesh":
        return mesh.render_chunks(mesh.prepare(crop.image, points), x0_Kx6, keypoints_Tx10x6)
    return _fomm_chunks(fomm, crop.image, x0_Kx6, keypoints_Tx10x6)


def write_frames(path: Path, chunks, n_frames: int, size: int, n_samples: int,
                 audio_file: str) -> None:
    """Stream rendered chunks into the mp4 at ``path`` with a progress bar (memory flat in the
    video's length); the sound is ``audio_file``'s own (its rate and channels), ``n_samples``
    long at 16 kHz."""
    n_out = max(1, math.ceil(n_samples / SAMPLE_RATE * FPS - 1e-6))
    with progress.bar(n_frames, "render", "frame") as bar, \
            video_writer(path, size, size, FPS, audio_file=audio_file, n_frames=n_out) as write:
        for chunk in chunks:
            write(chunk)
            bar.update(len(chunk))


def _fomm_chunks(fomm, source, x0_Kx6, keypoints_Tx10x6):
    """FOMM frames in fixed-size chunks (the last padded, so one compile), absolute keypoints.
    FOMM draws 256×256; other sizes are resized to that and back (``--size 512`` upsamples)."""
    kp_source = {k: v[None] for k, v in split(np.asarray(x0_Kx6, np.float32)).items()}
    size, side = 4 * fomm.chunk_size, source.shape[0]
    source = face.resize_frames(source[None], FOMM_SIZE)[0]
    for start in range(0, keypoints_Tx10x6.shape[0], size):
        part = keypoints_Tx10x6[start:start + size]
        valid = len(part)
        part = np.concatenate([part, np.repeat(part[-1:], size - valid, axis=0)])
        frames = np.asarray(fomm.render(source, kp_source, split(part))["prediction"][:valid])
        yield frames if side == FOMM_SIZE else face.resize_frames(frames, side)


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

    Every input is checked before the long work starts; bad ones raise ``InputError`` /
    ``InputError`` (one line, exit 2). Prints a one-line summary with frames, seconds and
    the frames/s of generation and of rendering.
    """

    command_started = time.perf_counter()
    for flag, value in (("--head-scale", args.head_scale), ("--lip-scale", args.lip_scale)):
        if not (np.isfinite(value) and 0 <= value <= MAX_MOTION_SCALE):
            raise InputError(None, f"{flag} must be a number from 0 to {MAX_MOTION_SCALE:g} (1 = "
                                   f"as trained, 0 = no such motion); got {value}")
    normalization = getattr(args, "audio_normalization", None)
    if normalization not in (None,) + AUDIO_NORMALIZATIONS:
        raise InputError(None, f"--audio-normalization must be one of "
                               f"{', '.join(AUDIO_NORMALIZATIONS)}; got {normalization!r}")
    drift_window = getattr(args, "drift_window", None)
    if drift_window is not None and not (np.isfinite(drift_window)
                                         and 0 <= drift_window <= MAX_DRIFT_WINDOW_S):
        raise InputError(None, f"--drift-window must be a number of seconds from 0 to "
                               f"{MAX_DRIFT_WINDOW_S:g} (0 = off); got {drift_window}")
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
    model, info, model_name = _load_generator(args.model)
    space = str(info.get("keypoint_space", ""))
    renderer = args.renderer or default_renderer(space, fomm_checkpoint)
    check_pairing(space, renderer, fomm_checkpoint, model_name)
    kind = _feature_kind(info, model, model_name)
    quantiles = _corpus_quantiles(info, normalization, model_name)
    fitted_articulation = model_articulation(info)
    if drift_window is None:
        # The model's window corrects its own rollouts; recorded motion is drawn as recorded.
        drift_window = float(info.get("drift_window_s") or 0.0) if given is None else 0.0

    image_name = args.image or "astronaut (bundled)"
    image = face.load_image(args.image) if args.image else demo_image()
    audio_path = args.audio or os.fspath(BUNDLED_SPEECH)
    # Long speech is read a block at a time: its samples are never held whole.
    features, n_samples = file_features(audio_path, kind)
    seconds = n_samples / SAMPLE_RATE
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError(args.audio, f"the audio is {seconds:.2f} s long; msync generate needs "
                                     f"at least {MIN_AUDIO_SECONDS:g} s of speech")
    size, crop_scale = getattr(args, "size", 256), getattr(args, "crop_scale", DEFAULT_CROP_SCALE)
    if not (np.isfinite(crop_scale) and MIN_CROP_SCALE <= crop_scale <= MAX_CROP_SCALE):
        raise InputError("--crop-scale", f"must be {MIN_CROP_SCALE:g} to {MAX_CROP_SCALE:g} "
                                         f"(the crop's side over the face's); got {crop_scale}")
    crop = face.no_crop(image, size) if args.no_crop else face.crop(
        image, size=size, margin=(crop_scale - 1) / 2, path=image_name)
    fomm = None
    if fomm_checkpoint:
        fomm = load_fomm(fomm_checkpoint)
        if fomm.config.generator.num_kp != N_KEYPOINTS:
            raise InputError(fomm_checkpoint, f"the FOMM model has {fomm.config.generator.num_kp} "
                                              f"keypoints; msync's generator moves {N_KEYPOINTS}")
    if quantiles is not None:
        features = match_features(features, quantiles)
    n_frames = n_video_frames(n_samples)
    if given is not None:
        if len(given) < n_frames:
            raise InputError(given_path, f"--keypoints: {len(given)} frames "
                                         f"({len(given) / FPS:.2f} s) do not cover the audio's "
                                         f"{n_frames} ({seconds:.2f} s)")
        given = given[:n_frames]

    # Warnings once every input is accepted (bad input stays one line): settings outside their
    # safe range, a model whose long rollouts drift or were never checked.
    warn_motion_scales(args.head_scale, args.lip_scale)
    drift_warning = long_rollout_warning(model_name, info, model_name) if given is None else None
    if drift_warning:
        warn(None, drift_warning)
    points = source_landmarks(crop) if space == LANDMARK_SPACE else None
    x0_model, to_image = _source_keypoints(crop, fomm, space, points)
    started = time.perf_counter()
    with progress.bar(n_frames, "generate" if given is None else "keypoints", "frame") as bar:
        generated = move_onto_source(given, x0_model) if given is not None else generate(
            model, x0_model, features, head_scale=args.head_scale, lip_scale=args.lip_scale)
        if given is None:
            generated = articulate(fitted_articulation, generated[None], features[None],
                                   args.lip_scale)[0]
        generated = remove_drift(generated, round(drift_window * FPS))
        bar.update(n_frames)
    generate_s = time.perf_counter() - started
    keypoints = to_image(generated)
    if not np.all(np.isfinite(keypoints)):
        raise FloatingPointError("the generator produced NaN or infinite keypoints")
    # The source is drawn at its own pose: frame 0 carries the articulation of the first 40 ms,
    # and a mouth opened there would make every quieter frame close the photo's mouth.
    x0 = np.asarray(to_image(x0_model), np.float32)

    started = time.perf_counter()
    with published(out) as partial:
        chunks = _frame_chunks(renderer, crop, x0, keypoints, fomm, points)
        write_frames(partial, chunks, n_frames, crop.image.shape[0], n_samples, audio_path)
    render_s = time.perf_counter() - started
    if keypoints_out is not None:
        with published(keypoints_out) as partial, open(partial, "wb") as handle:
            np.savez(handle, keypoints=keypoints.astype(np.float32), fps=np.float32(FPS),
                     keypoint_space=np.array(space))
    motion_from = f"keypoints of {given_path}" if given is not None else f"{space} model"
    print(f"msync generate: {n_frames} frames ({seconds:.2f} s of audio, {renderer} renderer, "
          f"{motion_from}, "
          + ("" if given is not None else
             f"audio {'matched to its corpus' if quantiles is not None else 'as is'}, ")
          + f"drift window {drift_window:g} s) -> {out}; generation {generate_s:.1f} s "
          f"({n_frames / max(generate_s, 1e-9):.0f} frames/s), rendering {render_s:.1f} s "
          f"({n_frames / max(render_s, 1e-9):.0f} frames/s), both with JIT compilation; "
          f"total {time.perf_counter() - command_started:.0f} s")
