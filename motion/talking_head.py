"""The delivered model and the one generation pipeline (docs/design.md, "Generation pipeline").

A saved model directory loads into a :class:`TalkingHeadModel` (:func:`load`; None = the bundled
demo model): the generator with everything generation reads from its ``model.json`` — keypoint
space, audio feature kind, the training corpus's feature quantiles, the mouth (the content mouth
``motion.lips``, read from what is said and how; the loudness articulation
``motion.articulation`` behind ``GenerationOptions.mouth = "loudness"``), the drift window, the
renderer of its space. A frozen
:class:`GenerationOptions` holds what a person chooses, checked once by
:meth:`GenerationOptions.validate`; :func:`resolve` fills what they left to the model.

Offline, one photo and one utterance::

    model = talking_head.load(None)
    options = talking_head.resolve(model, GenerationOptions(head_scale=1.5))
    source = talking_head.prepare(model, image, options)           # crop, landmarks, x0
    speech = open_speech("speech.wav")       # syncers.data.features: read a block at a time
    keypoints = talking_head.keypoints(model, source, speech, options)    # [T, 10, 6]
    for frames in talking_head.frames(source, keypoints, options):        # [n, S, S, 3]
        ...

and its streaming twin, ``talking_head.streamer(model, source, options)`` (``motion.stream``),
whose keypoints are these (tested). Every step around the rollout (eq. 10) lives here
once: corpus matching of the features (``syncers.data.features.match_features``), the
generator (``motion.generate``), the mouth scaled by ``lip_scale`` (its content decoded from
the speech, ``syncers.data.content``, its prosody from the unmatched log-mel rows), drift removal
(``motion.generate.remove_drift``), the map onto the crop and the renderer
(``render.renderer``). ``msync generate``, ``msync stream``, ``msync evaluate --model``, the
page and the benches call it, so a library user gets what the CLI draws.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Iterator

import jax
import numpy as np

from motion import blink, expression, lips
from motion.articulation import Articulation, apply, articulate
from motion.generate import generate, generate_batch, remove_drift
from motion.model import GeneratorModel
from motion.official.model import OfficialModel
from motion.saved_model import (
    META,
    PARAMS,
    load_model,
    model_articulation,
    model_expression,
    model_lips,
)
from motion.source import SourceFace, prepare_source
from motion.stream import Streamer
from render import renderer as render_api
from syncers.data import face
from syncers.data.content import speech_content
from syncers.data.features import Speech, feature_config, match_features, speech_features
from syncers.data.layout import FPS, LANDMARK_SPACE, PHANTOM_SPACE
from syncers.run.errors import InputError

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL_DIR = ASSETS / "demo_model"
# Its low-latency twin (model.fpn_lookahead = 5, its lip model 5 frames ahead, causal drift
# removal): frames about 300 ms after their speech when streamed (motion/assets/README.md).
LOW_LATENCY_MODEL_DIR = ASSETS / "demo_model_low_latency"
# ``load``'s choice of bundled model: "full" reads up to 1.16 s ahead, "low" 200 ms.
LATENCIES = ("full", "low")
# Six seconds of a US presidential address (public domain in the US; motion/assets/README.md).
BUNDLED_SPEECH = ASSETS / "speech.flac"

AUDIO_NORMALIZATIONS = ("corpus", "none")
# The mouth added to the generated lips: from what is said and how (motion.lips), or from the
# loudness alone (motion.articulation, the mouth before the content model; kept to compare).
MOUTHS = ("content", "loudness")
SIZES = (256, 512)
DEFAULT_CROP_SCALE = 1.8      # crop side / face box side: the whole head with some margin
MIN_CROP_SCALE, MAX_CROP_SCALE = 1.2, 4.0
MAX_MOTION_SCALE = 10.0       # head and lip scale: ten times the trained motion
# Beyond twice the trained motion, lips overshoot their range and heads swing out of the crop
# (the renderers clamp what folds over); allowed up to MAX_MOTION_SCALE, with a warning.
SAFE_MOTION_SCALE = 2.0
MAX_DRIFT_WINDOW_S = 600.0    # ten minutes
MAX_BLINK_SEED = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class TalkingHeadModel:
    """A saved model as generation uses it (built by :func:`load`).

    ``generator``: msync's ``GeneratorModel`` or a converted release (``OfficialModel``);
    ``path``: the directory it was read from (names it in messages); ``keypoint_space``;
    ``feature_kind`` (``logmel``, ``mfcc`` or ``official``); ``corpus_quantiles [Q, F]``: the
    training corpus's per-band feature quantiles, None when the model records none;
    ``articulation``: its loudness mouth, or None; ``lips``: its content mouth, or None;
    ``expression``: the span real faces' non-rigid motion keeps to (``motion.expression``), or
    None; ``drift_window_s``: the window
    generation removes slower motion over by default (0 = none); ``info``: the ``model.json``
    read (with ``params_sha256``), for the long-rollout record and its warnings.
    """

    generator: GeneratorModel | OfficialModel
    path: str
    keypoint_space: str
    feature_kind: str
    corpus_quantiles: np.ndarray | None
    articulation: Articulation | None
    lips: lips.LipModel | None
    drift_window_s: float
    info: dict
    expression: expression.ExpressionSpace | None = None

    @property
    def low_latency(self) -> bool:
        """A generator whose audio look-ahead is bounded (``GeneratorConfig.fpn_lookahead``):
        its drift removal is causal too (``motion.generate.remove_drift``), offline and
        streamed, so that nothing after its bound changes a frame."""
        return isinstance(self.generator, GeneratorModel) and \
            self.generator.config.fpn_lookahead is not None

    def default_renderer(self, with_fomm: bool = False) -> str:
        """FOMM when its weights are given, the mesh for ``landmarks-v1``, else the warp (a
        FOMM-space model without FOMM is then refused by :func:`resolve`, saying so)."""
        if with_fomm:
            return "fomm"
        return "mesh" if self.keypoint_space == LANDMARK_SPACE else "warp"


def load(path: str | os.PathLike | None = None, latency: str | None = None
         ) -> TalkingHeadModel:
    """The model at ``path`` (a saved model, a generator run or a converted release; None = the
    bundled demo model, or with ``latency="low"`` its low-latency twin). ``latency="low"`` with
    a path refuses a model that is not low-latency. Anything malformed or that this msync
    cannot compute is one ``InputError`` naming the file."""
    if latency not in (None,) + LATENCIES:
        raise InputError(None, f"--latency must be one of {', '.join(LATENCIES)}; got "
                               f"{latency!r}")
    if path is None:
        bundled = LOW_LATENCY_MODEL_DIR if latency == "low" else DEMO_MODEL_DIR
        if not ((bundled / META).is_file() and (bundled / PARAMS).is_file()):
            raise InputError(None, f"no bundled demo model is installed (looked in "
                                   f"{bundled}); pass --model RUN (a directory from "
                                   "`msync train generator`)")
        path = bundled
    name = os.fspath(path)
    generator, info = load_model(path)
    if latency == "low" and not (isinstance(generator, GeneratorModel)
                                 and generator.config.fpn_lookahead is not None):
        reach = f"{generator.config.lookahead} frames" if isinstance(generator, GeneratorModel) \
            else "its whole window"
        raise InputError(name, f"--latency low needs a low-latency model (trained with "
                               f"model.fpn_lookahead); this one reads {reach} of speech ahead "
                               f"— drop --model for the bundled low-latency model")
    stats = info.get("feature_stats")
    return TalkingHeadModel(
        generator=generator, path=name, keypoint_space=str(info.get("keypoint_space", "")),
        feature_kind=_feature_kind(info, generator, name),
        corpus_quantiles=None if stats is None else np.asarray(stats["quantiles"], np.float32),
        articulation=model_articulation(info), lips=model_lips(info),
        drift_window_s=float(info.get("drift_window_s") or 0.0), info=info,
        expression=model_expression(info))


def _feature_kind(info: dict, generator, name: str) -> str:
    """The feature kind a model was trained on; anything this msync cannot compute is refused."""
    recorded = info.get("features") or {}
    kind = recorded.get("kind", "logmel")
    if kind not in ("logmel", "mfcc", "official"):
        raise InputError(name, f"model.json: unknown audio feature kind {kind!r}")
    expected = feature_config(kind)
    bad = {k: v for k, v in recorded.items() if k in expected and v != expected[k]}
    if bad or generator.config.audio_features != expected["n_bands"]:
        raise InputError(name, f"model.json: the model's audio features {bad or recorded} differ "
                               f"from what msync computes ({expected})")
    return kind


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """What a person chooses, the same for offline and streamed generation.

    ``head_scale`` / ``lip_scale``: 1 as trained, 0 none, up to ``MAX_MOTION_SCALE``
    (``motion.generate``; the lip scale also scales the mouth); ``mouth``: one of ``MOUTHS``
    (``content``: ``motion.lips``; ``loudness``: ``motion.articulation``) or None = content
    when the model has a lip model, else loudness;
    ``audio_normalization``: ``corpus`` (match the features to the model's corpus), ``none``, or
    None = corpus when the model records its quantiles; ``drift_window_s``: None = the model's,
    0 = off, up to ``MAX_DRIFT_WINDOW_S``; ``renderer``: one of ``render.renderer.RENDERERS`` or
    None = the model's; ``crop``: around the face (False: the image's centre square);
    ``crop_scale``: the crop's side over the face box's; ``size``: the frames' side in pixels;
    ``blinks``: add spontaneous blinks to generated ``landmarks-v1`` motion (``motion.blink``;
    the generator's eyes follow speech, which blinking does not), drawn with ``blink_seed``;
    ``full_frame``: offline video only, the head put back into the whole photo
    (``render.composite``); ``expression``: keep the generated faces' non-rigid motion within
    the model's expression space (``motion.expression``; resolved to False for a model without
    one; False: the generator's motion as it is, for comparison).
    """

    head_scale: float = 1.0
    lip_scale: float = 1.0
    mouth: str | None = None
    audio_normalization: str | None = None
    drift_window_s: float | None = None
    renderer: str | None = None
    crop: bool = True
    crop_scale: float = DEFAULT_CROP_SCALE
    size: int = 256
    blinks: bool = True
    blink_seed: int = 0
    full_frame: bool = False
    expression: bool = True

    def validate(self) -> GenerationOptions:
        """``self`` when every choice is in range, else one ``InputError`` naming the CLI flag
        (the one set of ranges ``generate``, ``stream`` and the page share)."""
        for flag, value in (("--head-scale", self.head_scale), ("--lip-scale", self.lip_scale)):
            if not (_is_number(value) and 0 <= value <= MAX_MOTION_SCALE):
                raise InputError(None, f"{flag} must be a number from 0 to "
                                       f"{MAX_MOTION_SCALE:g} (1 = as trained, 0 = no such "
                                       f"motion); got {value}")
        if self.mouth not in (None,) + MOUTHS:
            raise InputError(None, f"--mouth must be one of {', '.join(MOUTHS)}; got "
                                   f"{self.mouth!r}")
        if self.audio_normalization not in (None,) + AUDIO_NORMALIZATIONS:
            raise InputError(None, f"--audio-normalization must be one of "
                                   f"{', '.join(AUDIO_NORMALIZATIONS)}; got "
                                   f"{self.audio_normalization!r}")
        window = self.drift_window_s
        if window is not None and not (_is_number(window) and 0 <= window <= MAX_DRIFT_WINDOW_S):
            raise InputError(None, f"--drift-window must be a number of seconds from 0 to "
                                   f"{MAX_DRIFT_WINDOW_S:g} (0 = off); got {window}")
        if self.renderer not in (None,) + render_api.RENDERERS:
            raise InputError(None, f"--renderer must be one of "
                                   f"{', '.join(render_api.RENDERERS)}; got {self.renderer!r}")
        if not (_is_number(self.crop_scale) and MIN_CROP_SCALE <= self.crop_scale
                <= MAX_CROP_SCALE):
            raise InputError("--crop-scale", f"must be {MIN_CROP_SCALE:g} to {MAX_CROP_SCALE:g} "
                                             f"(the crop's side over the face's); got "
                                             f"{self.crop_scale}")
        if isinstance(self.blink_seed, bool) or not isinstance(self.blink_seed, (int, np.integer)) \
                or not 0 <= self.blink_seed <= MAX_BLINK_SEED:
            raise InputError(None, f"--blink-seed must be a whole number from 0 to "
                                   f"{MAX_BLINK_SEED}; got {self.blink_seed!r}")
        if self.size not in SIZES:
            raise InputError(None, f"--size must be one of {', '.join(map(str, SIZES))}; got "
                                   f"{self.size!r}")
        return self

    def motion_scale_warnings(self) -> list[tuple[str, str]]:
        """One line per scale outside the safe 0 to ``SAFE_MOTION_SCALE`` (the hard limits are
        :meth:`validate`'s): ``(flag, message)`` pairs for ``syncers.run.errors.warn``."""
        return [(flag, f"{value:g} is outside the safe range 0 to {SAFE_MOTION_SCALE:g} (1 = as "
                       "trained): the motion may leave the face's natural range; going on")
                for flag, value in (("--head-scale", self.head_scale),
                                    ("--lip-scale", self.lip_scale))
                if not 0 <= value <= SAFE_MOTION_SCALE]


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and \
        not isinstance(value, bool) and math.isfinite(value)


def resolve(model: TalkingHeadModel, options: GenerationOptions, with_fomm: bool = False,
            draws: bool = True) -> GenerationOptions:
    """``options`` validated, with what was left to the model filled in (renderer,
    normalization, drift window, mouth) and checked against it: a renderer of another keypoint
    space, corpus matching for a model that records no quantiles, the content mouth for a model
    without a lip model. ``with_fomm``: FOMM weights are
    given (they make FOMM the default renderer; checked before they are loaded). ``draws=False``
    (keypoints only, as ``msync evaluate`` scores them): no renderer is chosen or checked."""
    options.validate()
    renderer = None
    if draws:
        renderer = options.renderer or model.default_renderer(with_fomm)
        check_pairing(model.keypoint_space, renderer, with_fomm, model.path)
    normalization = options.audio_normalization
    if normalization is None:
        normalization = "none" if model.corpus_quantiles is None else "corpus"
    elif normalization == "corpus" and model.corpus_quantiles is None:
        raise InputError(model.path, "--audio-normalization corpus: this model's model.json "
                                     "records no feature_stats (models exported before them); "
                                     "use --audio-normalization none")
    window = model.drift_window_s if options.drift_window_s is None else options.drift_window_s
    mouth = options.mouth or ("content" if model.lips is not None else "loudness")
    if mouth == "content" and model.lips is None:
        raise InputError(model.path, "--mouth content: this model has no lip model (msync "
                                     "train lips adds one); use --mouth loudness")
    if mouth == "content" and model.feature_kind != "logmel":
        raise InputError(model.path, f"--mouth content reads log-mel features; this model "
                                     f"reads {model.feature_kind}: use --mouth loudness")
    return dataclasses.replace(options, renderer=renderer, audio_normalization=normalization,
                               drift_window_s=float(window), mouth=mouth,
                               expression=bool(options.expression
                                               and model.expression is not None))


def check_pairing(keypoint_space: str, renderer: str, with_fomm: bool, model_name: str
                  ) -> None:
    """Refuse a model/renderer pair from different keypoint spaces (docs/design.md,
    "Keypoint spaces")."""
    if renderer == "fomm" and not with_fomm:
        raise InputError(None, "--renderer fomm needs --fomm-checkpoint PTH (the FOMM vox-256 "
                               "weights); without one use --renderer mesh or warp")
    if keypoint_space.startswith("fomm"):
        if renderer != "fomm":
            fix = f"drop --renderer {renderer}" if with_fomm else "pass --fomm-checkpoint PTH"
            raise InputError(model_name, f"this model moves FOMM keypoints ({keypoint_space}); "
                                         f"the {renderer} renderer cannot draw them — {fix} to "
                                         "render it with FOMM")
    elif keypoint_space in (PHANTOM_SPACE, LANDMARK_SPACE):
        if renderer == "fomm" or with_fomm:
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


def corpus_quantiles(model: TalkingHeadModel, options: GenerationOptions) -> np.ndarray | None:
    """The quantiles ``[Q, F]`` resolved ``options`` match the features onto, or None."""
    return model.corpus_quantiles if options.audio_normalization == "corpus" else None


def prepare(model: TalkingHeadModel, image: np.ndarray, options: GenerationOptions, fomm=None,
            image_name: str | None = None) -> SourceFace:
    """The photo ``image [H, W, 3]`` as the model animates it (``motion.source.prepare_source``
    with the options' crop)."""
    return prepare_source(image, model.keypoint_space, crop=options.crop, size=options.size,
                          crop_scale=options.crop_scale, fomm=fomm, image_name=image_name)


def as_speech(speech: Speech | np.ndarray) -> Speech:
    """A :class:`Speech` as given, or 16 kHz mono samples ``[n]`` held as one (no file)."""
    return speech if isinstance(speech, Speech) else Speech.held(speech)


def features(model: TalkingHeadModel, speech: Speech | np.ndarray, options: GenerationOptions
             ) -> np.ndarray:
    """The model's features ``[4T, F]`` of the speech (a :class:`Speech`, read a block at a
    time, or 16 kHz samples; the released model's front-end reads ``speech.path``), matched to
    its corpus when resolved ``options`` say so."""
    return _matched(model, speech_features(as_speech(speech), model.feature_kind), options)


def _matched(model: TalkingHeadModel, rows_4TxF: np.ndarray, options: GenerationOptions
             ) -> np.ndarray:
    quantiles = corpus_quantiles(model, options)
    return rows_4TxF if quantiles is None else match_features(rows_4TxF, quantiles)


def lip_offsets(model: TalkingHeadModel, speech: Speech | np.ndarray, rows_4TxF: np.ndarray,
                options: GenerationOptions) -> np.ndarray | None:
    """The content mouth's offsets ``[T, 20, 2]`` (``motion.lips.predict``) of the speech (what
    is said decoded block by block, ``syncers.data.content.speech_content``) and its unmatched
    log-mel rows ``[4T, F]`` (the prosody is the speech's own loudness, not the corpus-matched
    one) when resolved ``options`` choose it, else None."""
    if options.mouth != "content":
        return None
    return lips.predict(model.lips, speech_content(as_speech(speech),
                                                   model.lips.content_lookahead), rows_4TxF)


def model_keypoints(model: TalkingHeadModel, x0_Kx6: np.ndarray, features_4TxF: np.ndarray,
                    options: GenerationOptions, lip_offsets_Tx20x2: np.ndarray | None = None
                    ) -> np.ndarray:
    """Keypoints ``[T, 10, 6]`` in the model's frame from ``x0 [10, 6]`` and features already
    through :func:`features`: the generator, the mouth (the content mouth's offsets from
    :func:`lip_offsets`, needed when ``options.mouth`` is content), drift removal."""
    generated = generate(model.generator, x0_Kx6, features_4TxF, head_scale=options.head_scale,
                         lip_scale=options.lip_scale)
    offsets = None if lip_offsets_Tx20x2 is None else np.asarray(lip_offsets_Tx20x2)[None]
    return _after_rollout(model, generated[None], np.asarray(features_4TxF)[None],
                          np.asarray(x0_Kx6)[None], options, offsets)[0]


def model_keypoints_batch(model: TalkingHeadModel, x0_BxKx6: np.ndarray,
                          features_Bx4TxF: np.ndarray, options: GenerationOptions) -> np.ndarray:
    """:func:`model_keypoints` of a batch of raw features ``[B, 4T, F]`` (each matched to the
    corpus here, as :func:`features` would) and ``x0 [B, 10, 6]`` → ``[B, T, 10, 6]``
    (``msync evaluate --model`` scores these). Features carry no samples, so the content mouth
    cannot be computed here: ``options.mouth`` must be loudness."""
    quantiles = corpus_quantiles(model, options)
    rows = np.asarray(features_Bx4TxF, np.float32)
    if quantiles is not None:
        rows = np.stack([match_features(clip, quantiles) for clip in rows])
    generated = generate_batch(model.generator, x0_BxKx6, rows, head_scale=options.head_scale,
                               lip_scale=options.lip_scale)
    return _after_rollout(model, generated, rows, np.asarray(x0_BxKx6), options)


def _after_rollout(model: TalkingHeadModel, generated_BxTx10x6: np.ndarray,
                   features_Bx4TxF: np.ndarray, x0_BxKx6: np.ndarray,
                   options: GenerationOptions,
                   lip_offsets_BxTx20x2: np.ndarray | None = None) -> np.ndarray:
    window = round(options.drift_window_s * FPS)
    if options.expression:
        generated_BxTx10x6 = np.stack([expression.project(model.expression, clip, x0)
                                       for clip, x0 in zip(generated_BxTx10x6, x0_BxKx6)])
    if options.mouth == "content":
        if lip_offsets_BxTx20x2 is None:
            raise ValueError("the content mouth needs its offsets (lip_offsets of the samples)")
        # Into one array, a clip at a time: an hour's keypoints (22 MB) are copied as few times
        # as can be (msync generate's memory is flat in the length of the speech).
        out = np.empty(np.shape(generated_BxTx10x6), np.float32)
        for b, (clip, offsets) in enumerate(zip(generated_BxTx10x6, lip_offsets_BxTx20x2)):
            out[b] = apply(clip, offsets[:len(clip)], options.lip_scale)
            out[b] = remove_drift(out[b], window, model.low_latency)
        return out
    articulated = articulate(model.articulation, generated_BxTx10x6, features_Bx4TxF,
                             options.lip_scale)
    return np.stack([remove_drift(clip, window, model.low_latency) for clip in articulated])


def keypoints(model: TalkingHeadModel, source: SourceFace, speech: Speech | np.ndarray,
              options: GenerationOptions) -> np.ndarray:
    """Keypoints ``[T, 10, 6]`` in the crop's coordinates for the speech (a :class:`Speech`,
    whose file is read a block at a time, or 16 kHz mono samples; T = whole 40 ms frames) from
    resolved ``options``: what the renderer draws."""
    speech = as_speech(speech)
    rows = speech_features(speech, model.feature_kind)
    offsets = lip_offsets(model, speech, rows, options)
    matched = _matched(model, rows, options)
    del rows            # read by the mouth only: not held through the rollout (long speech)
    out = np.asarray(source.to_image(model_keypoints(model, source.x0, matched, options,
                                                     offsets)), np.float32)
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the generator produced NaN or infinite keypoints")
    closure = eye_closure(model, options, len(out))
    return out if closure is None else blink.apply(out, closure)


def blink_key(model: TalkingHeadModel, options: GenerationOptions) -> jax.Array | None:
    """The PRNG key of the blinks resolved ``options`` add to ``model``'s motion, or None (no
    blinks: turned off, or a keypoint space without eyelids to close)."""
    if not options.blinks or model.keypoint_space != LANDMARK_SPACE:
        return None
    return jax.random.PRNGKey(options.blink_seed)


def eye_closure(model: TalkingHeadModel, options: GenerationOptions, n_frames: int
                ) -> np.ndarray | None:
    """Eye closure ``[n_frames]`` in [0, 1] of the blinks (``motion.blink.generate``), or None.
    The schedule of a longer video starts with a shorter one's (the stream relies on it)."""
    key = blink_key(model, options)
    return None if key is None else blink.generate(key, n_frames, FPS)


def renderer(source: SourceFace, options: GenerationOptions, fomm=None,
             chunk: int | None = None) -> render_api.Renderer:
    """The resolved ``options``' renderer of ``source`` (its pairing with the model checked by
    :func:`resolve`), posed as the photo (``SourceFace.keypoints``)."""
    return render_api.prepare(options.renderer, source.crop.image, source.keypoints,
                              source.landmarks, fomm, chunk=chunk, resize=face.resize_frames)


def frames(source: SourceFace, keypoints_Tx10x6: np.ndarray, options: GenerationOptions,
           fomm=None) -> Iterator[np.ndarray]:
    """Frames ``[n, S, S, 3]`` float32 in [0, 1], in order, of ``keypoints [T, 10, 6]`` (crop
    coordinates) drawn by resolved ``options``' renderer (``fomm``: the loaded FOMM model)."""
    return renderer(source, options, fomm).chunks(keypoints_Tx10x6)


def streamer(model: TalkingHeadModel, source: SourceFace, options: GenerationOptions,
             draw: bool = True) -> Streamer:
    """The streaming twin of :func:`keypoints` + :func:`frames` (``motion.stream``): the same
    model, source and resolved options; frames one at a time (``draw=False``: keypoints only).
    Corpus matching is the stream's running approximation (``motion.stream.RunningMatch``)."""
    if model.feature_kind == "official" or isinstance(model.generator, OfficialModel):
        raise InputError(model.path, "streaming runs msync's own generator; the released "
                                     "MS-Sync model runs with msync generate")
    if options.renderer == "fomm":
        raise InputError(None, "streaming draws with the mesh or the warp; FOMM runs with "
                               "msync generate")
    return Streamer(model.generator, source,
                    renderer(source, options, chunk=1) if draw else None,
                    keypoint_space=model.keypoint_space, head_scale=options.head_scale,
                    lip_scale=options.lip_scale, drift_window_s=options.drift_window_s,
                    quantiles=corpus_quantiles(model, options),
                    feature_kind=model.feature_kind,
                    articulation_map=model.articulation if options.mouth == "loudness" else None,
                    lip_model=model.lips if options.mouth == "content" else None,
                    blink_key=blink_key(model, options), causal_drift=model.low_latency,
                    expression_space=model.expression if options.expression else None)

