"""Generation API: a keypoint sequence from a first frame and speech (paper §3.2, inference).

``generate(model, x0 [10, 6], audio_features [4T, 26]) -> [T, 10, 6]``: frame 0 is x0, frames
1..T−1 are rolled out by G. The warm-up history is x0 repeated ``obs_len`` times (frames
−O+1..0), and the audio before t = 0 is the audio after it mirrored (reflect padding about
feature 0); after the end the audio is mirrored too, for the FPN's look-ahead
(``GeneratorConfig.lookahead`` frames), so the last frames see speech-like context.

Lengths are padded up to buckets (:func:`bucket`) so a jitted rollout is compiled once per
bucket, not once per length; frames < T never depend on the padding beyond the mirrored
look-ahead, so the result does not depend on the bucket (tested).

``head_scale`` / ``lip_scale`` multiply the coarse-branch (levels 3–4: head motion at
800/1600 ms) and finest-branch (level 1: lips and jaw at 200 ms) terms of eq. 10 — 1 is the
trained model, 0 removes that motion, > 1 exaggerates it. They are traced values: changing them
does not recompile.

Two corrections for speech unlike the training corpus, both off in :func:`generate` itself and
chosen per model by ``msync generate`` (issue 6):

- :func:`match_features` (``--audio-normalization corpus``, the default when the model records
  ``feature_stats``): per band, every feature value is replaced by the training corpus's value at
  the same rank — quantile matching onto the per-band quantiles ``model.json`` records
  (``motion.saved_model``). Log-mel energies are absolute, so a recording's gain and noise floor
  move all of them; the phantom corpus's pauses are digital silence at the log floor. Matching
  ranks rather than mean/std keeps that two-mode (pause/speech) shape.
- :func:`remove_drift` (``--drift-window S``; default the model's ``drift_window_s``, 0 = off):
  each keypoint value's deviation from x0 minus its centred moving average over S seconds — a
  high-pass that keeps lip motion (syllables, 3–6 Hz) and removes the slow walk-off of a rollout
  whose velocities are biased. The bundled demo model needs it (1 s): on its own phantom test
  clips its mouth opening grows from 0.06 to 0.6 in 8 s (ground truth stays within 0.04–0.10),
  and on real speech the warp then swirls the face. It also removes the slowest head motion
  (below about 0.5 Hz), so a model that does not drift should not record it.

``msync generate`` (:func:`generate_command`) wraps this for a person with an image and a wav:
face crop → x0 (the FOMM KPDetector with ``--fomm-checkpoint``, else the phantom template on the
face box) → keypoints for the whole audio → frames (FOMM, else the weight-free warp) → H.264 +
AAC mp4 at 25 fps. A model and a renderer must share a keypoint space (DESIGN.md, "Data model").
With no ``--model`` the bundled demo model (``motion/assets/demo_model``) is used; with no
``--image`` / ``--audio`` the astronaut photograph that scikit-image ships and a phantom utterance
synthesised on the fly (same bytes every time).
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from motion.generator import KEYPOINT_DIM, N_KEYPOINTS, GeneratorConfig
from motion.rollout import frame_weights, rollout

_SMALL_BUCKETS = (32, 64, 128, 256)
_LARGE_BUCKET = 256


@flax.struct.dataclass
class GeneratorModel:
    """A generator ready to run: its parameters, (static) config and, once :func:`ready` made
    them, its per-frame weights in the rollout's layout (``motion.rollout.frame_weights``).
    ``frame_weights`` are derived from ``params``: a model with other parameters needs
    ``frame_weights=None`` (then :func:`ready` again), or it would generate with stale ones."""
    params: Any
    config: GeneratorConfig = flax.struct.field(pytree_node=False)
    frame_weights: Any = None


def ready(model: GeneratorModel) -> GeneratorModel:
    """``model`` with its per-frame weights prepared once, so that each generation call skips
    transposing them (what a loaded model does: ``motion.saved_model.load_model``)."""
    if model.frame_weights is not None:
        return model
    weights = jax.jit(frame_weights, static_argnums=1)(model.params, model.config)
    return model.replace(frame_weights=weights)


def bucket(n_frames: int) -> int:
    """Padded rollout length: 32/64/128/256, then multiples of 256 (≤ 2.5 % waste at 60 s)."""
    for size in _SMALL_BUCKETS:
        if n_frames <= size:
            return size
    return -(-n_frames // _LARGE_BUCKET) * _LARGE_BUCKET


@functools.partial(jax.jit, static_argnames=("n_frames", "config"))
def _rollout_jit(params, weights, x_obs, audio, head_scale, lip_scale, *, n_frames, config):
    return rollout(params, x_obs, audio, n_frames, config=config, head_scale=head_scale,
                   lip_scale=lip_scale, weights=weights)


def pad_audio(audio_Bx4TxF: np.ndarray, obs_len: int, lookahead: int, total_frames: int
              ) -> np.ndarray:
    """Mirror ``obs_len − 1`` frames before t=0 and ``lookahead`` after the end, then zeros up to
    ``total_frames`` (≥ what the rollout needs): ``[B, 4T, F]`` → ``[B, 4·total_frames, F]``."""
    before = 4 * (obs_len - 1)
    after = 4 * lookahead
    n_feat = audio_Bx4TxF.shape[1]
    # reflect needs more samples than the pad; symmetric-repeat short clips instead
    mode = "reflect" if n_feat > max(before, after) else "symmetric"
    padded = np.pad(audio_Bx4TxF, ((0, 0), (before, after), (0, 0)), mode=mode)
    extra = 4 * total_frames - padded.shape[1]
    if extra > 0:
        padded = np.pad(padded, ((0, 0), (0, extra), (0, 0)))
    return padded[:, :4 * total_frames]


def generate_batch(model: GeneratorModel, x0_BxKx6, audio_features_Bx4TxF, head_scale=1.0,
                   lip_scale=1.0) -> np.ndarray:
    """``x0 [B, 10, 6]``, ``audio_features [B, 4T, F]`` → keypoints ``[B, T, 10, 6]``."""
    config = model.config
    x0 = np.asarray(x0_BxKx6, np.float32)
    audio = np.asarray(audio_features_Bx4TxF, np.float32)
    if x0.ndim != 3 or x0.shape[1:] != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"x0 must be [B, {N_KEYPOINTS}, {KEYPOINT_DIM}]; got {x0.shape}")
    if audio.ndim != 3 or audio.shape[0] != x0.shape[0] or audio.shape[2] != config.audio_features:
        raise ValueError(f"audio_features must be [B={x0.shape[0]}, 4T, "
                         f"{config.audio_features}]; got {audio.shape}")
    n_frames = audio.shape[1] // 4
    if n_frames < 1 or audio.shape[1] % 4:
        raise ValueError(f"audio_features must hold 4·T features, T ≥ 1; got {audio.shape[1]}")
    if n_frames == 1:
        return x0[:, None]
    obs = config.obs_len
    n_gen = bucket(n_frames - 1)
    # the rollout reads the look-ahead past its last frame: give it the mirrored audio there
    audio_in = pad_audio(audio, obs, config.lookahead, obs + n_gen + config.lookahead)
    x_obs = np.repeat(x0[:, None], obs, axis=1)
    frames = _rollout_jit(model.params, model.frame_weights, jnp.asarray(x_obs),
                          jnp.asarray(audio_in),
                          jnp.float32(head_scale), jnp.float32(lip_scale),
                          n_frames=n_gen, config=config)
    return np.concatenate([x0[:, None], np.asarray(frames)[:, :n_frames - 1]], axis=1)


def generate(model: GeneratorModel, x0_Kx6, audio_features_4TxF, head_scale=1.0,
             lip_scale=1.0) -> np.ndarray:
    """``x0 [10, 6]``, ``audio_features [4T, F]`` → keypoints ``[T, 10, 6]`` (frame 0 = x0)."""
    x0 = np.asarray(x0_Kx6, np.float32)
    audio = np.asarray(audio_features_4TxF, np.float32)
    if x0.shape != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"x0 must be [{N_KEYPOINTS}, {KEYPOINT_DIM}]; got {x0.shape}")
    if audio.ndim != 2:
        raise ValueError(f"audio_features must be [4T, F]; got {audio.shape}")
    return generate_batch(model, x0[None], audio[None], head_scale, lip_scale)[0]


def match_features(features_4TxF: np.ndarray, quantiles_QxF: np.ndarray) -> np.ndarray:
    """Per-band quantile matching: ``[4T, F]`` → ``[4T, F]`` with each band's values replaced by
    the corpus's at the same rank.

    ``quantiles [Q, F]`` are the corpus's per-band quantiles at levels ``linspace(0, 1, Q)``.
    A value of mid-rank ``u = (rank − ½) / 4T`` (tied values share their mean rank, so a band
    that is constant maps to the corpus median) becomes the corpus quantile at ``u``, linearly
    interpolated. The result's per-band distribution is the corpus's; its time course (which
    frame is louder than which) is the utterance's.
    """
    from scipy.stats import rankdata

    features = np.asarray(features_4TxF, np.float32)
    quantiles = np.asarray(quantiles_QxF, np.float32)
    if features.ndim != 2 or quantiles.ndim != 2 or quantiles.shape[1] != features.shape[1]:
        raise ValueError(f"features [4T, F] and quantiles [Q, F] must share F; got "
                         f"{features.shape} and {quantiles.shape}")
    if features.shape[0] == 0:
        return features.copy()
    levels = np.linspace(0.0, 1.0, quantiles.shape[0])
    ranks = (rankdata(features, method="average", axis=0) - 0.5) / features.shape[0]
    out = np.empty_like(features)
    for band in range(features.shape[1]):
        out[:, band] = np.interp(ranks[:, band], levels, quantiles[:, band])
    return out


def remove_drift(keypoints_Tx10x6: np.ndarray, window_frames: int) -> np.ndarray:
    """``[T, 10, 6]`` → ``[T, 10, 6]``: each value minus the centred moving average (width
    ``window_frames``, made odd) of its deviation from frame 0.

    The deviation is extended past both ends by odd reflection (``2·d[edge] − d[edge ∓ k]``), so
    a linear walk-off is removed right up to the ends, and the first and the last frame are x0
    exactly (the face starts as the source image and comes back to it over the last half
    window). A window under 2 frames returns the input unchanged.
    """
    keypoints = np.asarray(keypoints_Tx10x6, np.float32)
    half = int(window_frames) // 2
    if half < 1 or keypoints.shape[0] < 2:
        return keypoints.copy()
    deviation = (keypoints - keypoints[:1]).astype(np.float64)
    padded = np.pad(deviation, ((half, half), (0, 0), (0, 0)), mode="reflect",
                    reflect_type="odd")
    sums = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
    trend = (sums[2 * half + 1:] - sums[:-(2 * half + 1)]) / (2 * half + 1)
    return (keypoints - trend).astype(np.float32)


# --- msync generate ------------------------------------------------------------------------------

FPS = 25.0
MIN_AUDIO_SECONDS = 0.5        # a couple of syllables; shorter clips give no visible motion
DEMO_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "demo_model"
DEMO_SPEECH_SECONDS = 4.0
DEMO_SPEECH_SEED = 20240
PHANTOM_SPACE = "phantom-v1"
AUDIO_NORMALIZATIONS = ("corpus", "none")
# The phantom corpus draws each speaker's face box around this centre with about this half side
# (syncers.data.phantom.motion.synth_clip: centre x ∈ ±0.1, y ∈ [−0.15, 0.05], half width 0.30–0.45,
# height 1.0–1.2× the width). A phantom model runs in such a box; its output is then mapped onto
# the detected face by a similarity (scale + shift), which leaves the jacobians unchanged.
PHANTOM_BOX_CENTRE = (0.0, -0.05)
PHANTOM_BOX_HALF = 0.39


def demo_image() -> np.ndarray:
    """The bundled face: scikit-image's astronaut photograph ``[512, 512, 3]`` float32 in [0, 1]."""
    from skimage import data
    return data.astronaut().astype(np.float32) / 255.0


def demo_speech(seconds: float = DEMO_SPEECH_SECONDS, seed: int = DEMO_SPEECH_SEED) -> np.ndarray:
    """The bundled utterance: a phantom speaker (``syncers.data.phantom.audio``), ``[n]`` float32 at
    16 kHz, whole 40 ms frames; the same samples for the same arguments."""
    from syncers.data.phantom import audio as pa

    plan_rng, audio_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    n_frames = int(round(seconds * pa.FPS))
    plan = pa.plan_speech(plan_rng, n_frames / pa.FPS, f0_base=140.0)
    return pa.render_speech(plan, n_frames * pa.SAMPLES_PER_FRAME, audio_rng)


def check_pairing(keypoint_space: str, renderer: str, fomm_checkpoint: str | None,
                  model_name: str) -> None:
    """Refuse a model/renderer pair from different keypoint spaces (DESIGN.md, "Data model")."""
    from syncers.run.errors import InputError

    if renderer == "fomm" and not fomm_checkpoint:
        raise InputError(None, "--renderer fomm needs --fomm-checkpoint PTH (the FOMM vox-256 "
                               "weights); without one use --renderer warp")
    if keypoint_space.startswith("fomm"):
        if renderer != "fomm":
            fix = "drop --renderer warp" if fomm_checkpoint else "pass --fomm-checkpoint PTH"
            raise InputError(model_name, f"this model moves FOMM keypoints ({keypoint_space}); "
                                         f"the warp renderer draws {PHANTOM_SPACE} keypoints — "
                                         f"{fix} to render it with FOMM")
    elif keypoint_space == PHANTOM_SPACE:
        if renderer == "fomm" or fomm_checkpoint:
            raise InputError(model_name, f"this model moves {PHANTOM_SPACE} keypoints (trained on "
                                         "the phantom corpus); FOMM cannot draw them — drop "
                                         "--fomm-checkpoint/--renderer fomm (the warp renderer "
                                         "draws them)")
    else:
        raise InputError(model_name, f"unknown keypoint space {keypoint_space!r}: neither FOMM "
                                     f"(fomm-*) nor {PHANTOM_SPACE}, so no renderer can draw it")


def _load_generator(path: str | None) -> tuple[GeneratorModel, dict, str]:
    """``(model, info, name)`` from ``--model`` or the bundled demo model."""
    from motion.saved_model import META, PARAMS, load_model
    from syncers.run.errors import InputError

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
    from syncers.run.errors import InputError
    from syncers.data.features import feature_config

    recorded = info.get("features") or {}
    kind = recorded.get("kind", "logmel")
    if kind not in ("logmel", "mfcc"):
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
    from syncers.run.errors import InputError

    stats = info.get("feature_stats")
    if normalization == "none" or (stats is None and normalization is None):
        return None
    if stats is None:
        raise InputError(name, "--audio-normalization corpus: this model's model.json records no "
                               "feature_stats (models exported before them); use "
                               "--audio-normalization none")
    return np.asarray(stats["quantiles"], np.float32)


def _source_keypoints(crop, fomm) -> tuple[np.ndarray, Any]:
    """x0 ``[10, 6]`` in the model's frame and the map from it to the crop's image coordinates.

    FOMM: the KPDetector on the crop, identity map. Phantom: the template in the corpus's
    typical face box, mapped onto the detected face (uniform scale + shift of the positions).
    """
    from render.keypoints import join
    from syncers.data.phantom.template import fit_to_box

    if fomm is not None:
        return join(fomm.keypoints(crop.image[None]))[0].astype(np.float32), lambda kp: kp
    x0, y0, x1, y1 = crop.face_box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2], np.float32)
    scale = np.float32(half.mean() / PHANTOM_BOX_HALF)
    model_centre = np.asarray(PHANTOM_BOX_CENTRE, np.float32)
    model_half = half / scale                    # the face's aspect at the corpus's size
    x0_model = fit_to_box((*(model_centre - model_half), *(model_centre + model_half)))

    def to_image(kp_Tx10x6: np.ndarray) -> np.ndarray:
        out = np.array(kp_Tx10x6, np.float32)
        out[..., :2] = centre + scale * (out[..., :2] - model_centre)
        return out

    return x0_model, to_image


def _render_frames(renderer: str, crop, x0_Kx6, keypoints_Tx10x6, fomm) -> np.ndarray:
    """Frames ``[T, 256, 256, 3]`` uint8, with a progress bar."""
    from tqdm import tqdm

    n = keypoints_Tx10x6.shape[0]
    frames = np.empty((n,) + crop.image.shape, np.uint8)
    done = 0
    with tqdm(total=n, desc="render", unit="frame") as bar:
        if renderer == "warp":
            from render.warp import render_chunks
            chunks = render_chunks(crop.image, x0_Kx6, keypoints_Tx10x6)
        else:
            chunks = _fomm_chunks(fomm, crop.image, x0_Kx6, keypoints_Tx10x6)
        for chunk in chunks:
            frames[done:done + len(chunk)] = (np.clip(chunk, 0.0, 1.0) * 255.0 + 0.5
                                              ).astype(np.uint8)
            done += len(chunk)
            bar.update(len(chunk))
    return frames


def _fomm_chunks(fomm, source, x0_Kx6, keypoints_Tx10x6):
    """FOMM frames in fixed-size chunks (the last padded, so one compile), absolute keypoints."""
    from render.keypoints import split

    kp_source = {k: v[None] for k, v in split(np.asarray(x0_Kx6, np.float32)).items()}
    size = 4 * fomm.chunk_size
    for start in range(0, keypoints_Tx10x6.shape[0], size):
        part = keypoints_Tx10x6[start:start + size]
        valid = len(part)
        part = np.concatenate([part, np.repeat(part[-1:], size - valid, axis=0)])
        yield fomm.render(source, kp_source, split(part))["prediction"][:valid]


def _output_path(path: str | None, suffix: str, flag: str) -> Path | None:
    from syncers.run.errors import InputError

    if path is None:
        return None
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise InputError(out, f"{flag} must name a {suffix} file")
    if out.is_dir():
        raise InputError(out, "is a directory; name the file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out.parent, f"cannot create the directory ({err.strerror})") from None
    return out


def generate_command(args: Any) -> None:
    """``msync generate``: image + speech → talking-head mp4 (see the module docstring).

    Every input is checked before the long work starts; bad ones raise ``InputError`` /
    ``RenderInputError`` (one line, exit 2). Prints a one-line summary with frames, seconds and
    the frames/s of generation and of rendering.
    """
    from tqdm import tqdm

    from render import face
    from render.video import write_video
    from syncers.run.errors import InputError
    from syncers.data.features import SAMPLE_RATE, audio_features, load_audio, n_video_frames

    command_started = time.perf_counter()
    for flag, value in (("--head-scale", args.head_scale), ("--lip-scale", args.lip_scale)):
        if not (np.isfinite(value) and value >= 0):
            raise InputError(None, f"{flag} must be a number >= 0 (1 = as trained, 0 = no such "
                                   f"motion); got {value}")
    normalization = getattr(args, "audio_normalization", None)
    if normalization not in (None,) + AUDIO_NORMALIZATIONS:
        raise InputError(None, f"--audio-normalization must be one of "
                               f"{', '.join(AUDIO_NORMALIZATIONS)}; got {normalization!r}")
    drift_window = getattr(args, "drift_window", None)
    if drift_window is not None and not (np.isfinite(drift_window) and drift_window >= 0):
        raise InputError(None, f"--drift-window must be a number of seconds >= 0 (0 = off); got "
                               f"{drift_window}")
    out = _output_path(args.out, ".mp4", "--out")
    keypoints_out = _output_path(getattr(args, "keypoints_out", None), ".npz", "--keypoints-out")
    fomm_checkpoint = getattr(args, "fomm_checkpoint", None)
    renderer = args.renderer or ("fomm" if fomm_checkpoint else "warp")
    model, info, model_name = _load_generator(args.model)
    space = str(info.get("keypoint_space", ""))
    check_pairing(space, renderer, fomm_checkpoint, model_name)
    kind = _feature_kind(info, model, model_name)
    quantiles = _corpus_quantiles(info, normalization, model_name)
    if drift_window is None:
        drift_window = float(info.get("drift_window_s") or 0.0)

    image_name = args.image or "astronaut (bundled)"
    image = face.load_image(args.image) if args.image else demo_image()
    if args.audio:
        samples = load_audio(args.audio)
    else:
        samples = demo_speech()
    seconds = samples.size / SAMPLE_RATE
    if seconds < MIN_AUDIO_SECONDS:
        raise InputError(args.audio, f"the audio is {seconds:.2f} s long; msync generate needs "
                                     f"at least {MIN_AUDIO_SECONDS:g} s of speech")
    crop = face.no_crop(image) if args.no_crop else face.crop(image, path=image_name)
    fomm = None
    if fomm_checkpoint:
        from render.fomm import load
        fomm = load(fomm_checkpoint)
        if fomm.config.generator.num_kp != N_KEYPOINTS:
            raise InputError(fomm_checkpoint, f"the FOMM model has {fomm.config.generator.num_kp} "
                                              f"keypoints; msync's generator moves {N_KEYPOINTS}")
    features = audio_features(samples, kind)
    if quantiles is not None:
        features = match_features(features, quantiles)
    n_frames = n_video_frames(samples.size)

    x0_model, to_image = _source_keypoints(crop, fomm)
    started = time.perf_counter()
    with tqdm(total=n_frames, desc="generate", unit="frame") as bar:
        generated = generate(model, x0_model, features, head_scale=args.head_scale,
                             lip_scale=args.lip_scale)
        generated = remove_drift(generated, round(drift_window * FPS))
        bar.update(n_frames)
    generate_s = time.perf_counter() - started
    keypoints = to_image(generated)
    if not np.all(np.isfinite(keypoints)):
        raise FloatingPointError("the generator produced NaN or infinite keypoints")
    x0 = keypoints[0]

    started = time.perf_counter()
    frames = _render_frames(renderer, crop, x0, keypoints, fomm)
    render_s = time.perf_counter() - started

    partial = out.with_name(out.stem + ".partial" + out.suffix)   # no half-written out
    try:
        write_video(partial, frames, fps=FPS, audio=samples, sample_rate=SAMPLE_RATE)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    if keypoints_out is not None:
        with open(keypoints_out, "wb") as handle:
            np.savez(handle, keypoints=keypoints.astype(np.float32), fps=np.float32(FPS),
                     keypoint_space=np.array(space))
    print(f"msync generate: {n_frames} frames ({seconds:.2f} s of audio, {renderer} renderer, "
          f"{space} model, audio {'matched to its corpus' if quantiles is not None else 'as is'}"
          f", drift window {drift_window:g} s) -> {out}; generation {generate_s:.1f} s "
          f"({n_frames / max(generate_s, 1e-9):.0f} frames/s), rendering {render_s:.1f} s "
          f"({n_frames / max(render_s, 1e-9):.0f} frames/s), both with JIT compilation; "
          f"total {time.perf_counter() - command_started:.0f} s")
