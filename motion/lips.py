"""The mouth's shape from what is said and how: a map fitted on real mouths from a window of
speech content (viseme occupancies, ``syncers.data.content``) and prosody to the mouth's
principal shapes in the head's frame (a departure from the paper; it reads what
``motion.articulation`` reads loudness for, and its offsets are applied the same way).

- **Target.** Per frame, the 20 mouth landmarks in the head's frame
  (``motion.articulation.aligned_mouth``) minus the clip's rest mouth: their median over the
  frames the content calls rest (silence), or over the clip's first fifth of frames by loudness
  when it has fewer than ``MIN_REST_FRAMES`` of them. Its first ``K`` principal components over
  the training frames (mirrored copies added) are predicted: ``c [T, K]``.
- **Input.** Per frame, ``content [T, V]`` and/or ``prosody [T, 1]``: the frame's log energy
  (:func:`log_energy`, ``2 · log`` of ``syncers.data.measures.frame_mel_loudness``) minus the
  loudest over the ``LEVEL_BEFORE`` frames before it and ``after`` after it, floored at
  ``PROSODY_FLOOR``: a loudness relative to the speech around it, the same for a recording 5×
  quieter (the recording's level is not its articulation).
  Frames ``t − before .. t + after`` of both form the window ``[T, (before + after + 1)·C]``: the
  shape of a phone spreads over its neighbours (coarticulation) and the mouth may move before
  the sound, each as far as the data say. The content is decoded with ``content_lookahead``
  frames of look-ahead (``syncers.data.content``; 12 by default, fewer for a low-latency
  stream), the same when fitting and generating: a frame's mouth reads speech up to
  ``max(after + content_lookahead, 2·after)`` frames past it (:attr:`LipModel.lookahead`).
- **Map.** Ridge regression ``ĉ = (x − μ)/σ · W + b`` (closed form, the ridge weight chosen on
  the validation split; a shape whose validation r is under ``MIN_VAL_R`` is left out). A
  regression predicts the mean mouth given the sound, a fraction of a real mouth's motion; each
  coefficient is then carried onto the recorded coefficients' distribution by their quantiles
  over the training frames (``ĉ`` at rank u → the recorded coefficient at rank u): the timing
  comes from the speech, the sizes, including how often and how far the lips close, from real
  mouths. No gain is set by hand.
- **Use.** ``offsets [T, 20, 2] = c · components`` in mean-face coordinates, as
  ``motion.articulation.predict`` returns: ``motion.articulation.apply`` turns them into each
  frame's head pose and onto the ``landmarks-v1`` keypoints 5–9.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from scipy.ndimage import maximum_filter1d

from motion.articulation import N_MOUTH
from syncers.data import landmark_space
from syncers.data.content import DEFAULT_LOOKAHEAD, N_VISEMES, REST
from syncers.data.measures import aligned_mouth, frame_mel_loudness

INPUTS = ("content", "prosody", "both")
DEFAULT_BEFORE, DEFAULT_AFTER = 6, 4        # frames of context: 240 ms before, 160 ms after
# The low-latency twin's (docs/design.md, "Streaming and the web page"): 80 ms after, the
# content labelled 120 ms after it is heard: its mouth reads 5 frames (200 ms) ahead.
LOW_LATENCY_AFTER, LOW_LATENCY_CONTENT_LOOKAHEAD = 2, 3
DEFAULT_COMPONENTS = 4
PREDICT_FRAMES = 4096                       # frames predict reads at a time: memory flat in T
LEVEL_BEFORE = 50                           # frames (2 s) the speech level is read over
PROSODY_FLOOR = -8.0                        # log energy below the local peak: a pause
MIN_REST_FRAMES = 10
N_QUANTILES = 101
MIN_VAL_R = 0.1                             # a shape kept must follow speech on validation
RIDGE_GRID = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)


@dataclasses.dataclass(frozen=True)
class LipModel:
    """A fitted map from speech windows to mouth offsets (module docstring).

    ``feature_mean``, ``feature_scale``: ``[D]``, ``D = (before + after + 1)·C`` with ``C`` the
    channels of ``inputs`` (``V`` visemes and/or 1 prosody); ``weights``: ``[D, K]``;
    ``bias``: ``[K]``; ``predicted_quantiles``, ``recorded_quantiles``: ``[K, Q]`` (the
    coefficients' distribution map); ``components``: ``[K, 40]`` (the mouth's 20 landmarks ×
    (x, y), mean-face coordinates)."""
    inputs: str
    before: int
    after: int
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    predicted_quantiles: np.ndarray
    recorded_quantiles: np.ndarray
    components: np.ndarray
    content_lookahead: int = DEFAULT_LOOKAHEAD

    def to_json(self) -> dict:
        return {field.name: (value.tolist() if isinstance(value, np.ndarray) else value)
                for field in dataclasses.fields(self)
                for value in [getattr(self, field.name)]}

    @property
    def reads_content(self) -> bool:
        return self.inputs in ("content", "both")

    @property
    def reads_prosody(self) -> bool:
        return self.inputs in ("prosody", "both")

    @property
    def lookahead(self) -> int:
        """Video frames of speech past a frame that its mouth reads: its window's frames after
        plus the content's own look-ahead, and the prosody of the last of them, which reads as
        many after it again."""
        return max(self.after + self.content_lookahead if self.reads_content else 0,
                   2 * self.after if self.reads_prosody else 0)


_ARRAYS = ("feature_mean", "feature_scale", "weights", "bias", "predicted_quantiles",
           "recorded_quantiles", "components")


def from_json(raw: dict) -> LipModel:
    """The :class:`LipModel` ``to_json`` wrote; ValueError naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("lips must be an object")
    names = ["inputs", "before", "after", *_ARRAYS]
    missing = set(names) - set(raw)
    if missing:
        raise ValueError(f"lips lacks {sorted(missing)}")
    if raw["inputs"] not in INPUTS:
        raise ValueError(f"lips inputs must be one of {INPUTS}; got {raw['inputs']!r}")
    before, after = raw["before"], raw["after"]
    content_lookahead = raw.get("content_lookahead", DEFAULT_LOOKAHEAD)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 50
               for v in (before, after, content_lookahead)):
        raise ValueError("lips before/after/content_lookahead must be integers in 0..50")
    try:
        arrays = {name: np.asarray(raw[name], np.float32) for name in _ARRAYS}
    except (TypeError, ValueError):
        raise ValueError("lips arrays must be lists of numbers") from None
    d = (before + after + 1) * n_channels(raw["inputs"])
    k = arrays["bias"].shape[0] if arrays["bias"].ndim == 1 else -1
    expected = {"feature_mean": (d,), "feature_scale": (d,), "weights": (d, k), "bias": (k,),
                "components": (k, 2 * N_MOUTH)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise ValueError(f"lips {name} must be {list(shape)} (D = {d}, K = {k}); got "
                             f"{list(arrays[name].shape)}")
    q = arrays["predicted_quantiles"]
    if q.ndim != 2 or q.shape[0] != k or q.shape[1] < 2 or \
            arrays["recorded_quantiles"].shape != q.shape:
        raise ValueError(f"lips quantiles must both be [K = {k}, Q ≥ 2]; got "
                         f"{list(q.shape)} and {list(arrays['recorded_quantiles'].shape)}")
    if not all(np.all(np.isfinite(a)) for a in arrays.values()) or \
            np.any(arrays["feature_scale"] <= 0) or np.any(np.diff(q, axis=1) < 0) or \
            np.any(np.diff(arrays["recorded_quantiles"], axis=1) < 0):
        raise ValueError("lips arrays must be finite, feature_scale positive, quantiles "
                         "non-decreasing")
    return LipModel(raw["inputs"], before, after, **arrays, content_lookahead=content_lookahead)


def log_energy(audio_features_4TxF: np.ndarray) -> np.ndarray:
    """``[T]``: each video frame's log energy, the mean over its four log-mel rows of the
    log-sum-exp of the bands (``2 · log frame_mel_loudness``; the prosody's unit)."""
    return 2.0 * np.log(frame_mel_loudness(audio_features_4TxF))


def n_channels(inputs: str) -> int:
    return {"content": N_VISEMES, "prosody": 1, "both": N_VISEMES + 1}[inputs]


def prosody(audio_features_4TxF: np.ndarray, after: int) -> np.ndarray:
    """``[T, 1]``: each frame's log energy below the loudest of frames ``t − LEVEL_BEFORE ..
    t + after``, floored at ``PROSODY_FLOOR`` (module docstring). Scaling the audio by any
    factor leaves it unchanged (above the features' floor)."""
    energy = log_energy(audio_features_4TxF)
    if len(energy) == 0:
        return np.zeros((0, 1), np.float32)
    # maximum_filter1d: size s at origin o covers t − s//2 − o .. t + (s−1)//2 − o
    size = LEVEL_BEFORE + after + 1
    origin = (size - 1) // 2 - after
    level = maximum_filter1d(energy, size, mode="nearest", origin=origin)
    return np.maximum(energy - level, PROSODY_FLOOR)[:, None].astype(np.float32)


def frame_inputs(inputs: str, content_TxV: np.ndarray | None,
                 audio_features_4TxF: np.ndarray | None, after: int) -> np.ndarray:
    """Per-frame channels ``[T, C]`` for ``inputs`` (module docstring); the content's T rules
    when both are given (features cover at least as many frames)."""
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}; got {inputs!r}")
    parts = []
    if inputs in ("content", "both"):
        content = np.asarray(content_TxV, np.float32)
        if content.ndim != 2 or content.shape[1] != N_VISEMES:
            raise ValueError(f"content must be [T, {N_VISEMES}]; got {content.shape}")
        parts.append(content)
    if inputs in ("prosody", "both"):
        features = np.asarray(audio_features_4TxF, np.float32)
        if features.ndim != 2:
            raise ValueError(f"audio_features must be [4T, F]; got {features.shape}")
        parts.append(prosody(features, after))
    n_frames = len(parts[0])
    if any(len(p) < n_frames for p in parts):
        raise ValueError(f"audio_features cover {min(len(p) for p in parts)} frames, the "
                         f"content {n_frames}")
    return np.concatenate([p[:n_frames] for p in parts], axis=1)


def windows(frames_TxC: np.ndarray, before: int, after: int) -> np.ndarray:
    """``[T, C]`` → ``[T, (before + after + 1)·C]``: frames ``t − before .. t + after``, the
    first and last frame repeated past the ends."""
    frames = np.asarray(frames_TxC, np.float32)
    padded = np.pad(frames, ((before, after), (0, 0)), mode="edge")
    return _windows_of(padded, 0, len(frames), before + after + 1)


def _windows_of(padded_PxC: np.ndarray, lo: int, hi: int, width: int) -> np.ndarray:
    """Rows ``lo .. hi`` of :func:`windows`, from its edge-padded frames ``[T + width − 1, C]``."""
    return np.concatenate([padded_PxC[lo + i:hi + i] for i in range(width)], axis=1)


def coefficients(model: LipModel, windows_TxD: np.ndarray) -> np.ndarray:
    """``[T, K]``: the shape coefficients of windows ``[T, D]``, on the recorded scale."""
    linear = ((np.asarray(windows_TxD, np.float32) - model.feature_mean) / model.feature_scale
              @ model.weights + model.bias)
    return np.stack([np.interp(linear[:, k], model.predicted_quantiles[k],
                               model.recorded_quantiles[k])
                     for k in range(linear.shape[1])], axis=1).astype(np.float32)


def predict(model: LipModel, content_TxV: np.ndarray | None,
            audio_features_4TxF: np.ndarray | None) -> np.ndarray:
    """Mouth offsets ``[T, 20, 2]`` (mean-face coordinates, from the rest mouth) for a clip's
    content ``[T, V]`` and/or log-mel features ``[4T, F]`` (the ones ``model.inputs`` reads)."""
    frames = frame_inputs(model.inputs, content_TxV, audio_features_4TxF, model.after)
    padded = np.pad(frames, ((model.before, model.after), (0, 0)), mode="edge")
    width = model.before + model.after + 1
    out = np.empty((len(frames), 2 * N_MOUTH), np.float32)
    # The windows ([T, width·C], 60 MB an hour, and their scaled copy) a piece at a time.
    for lo in range(0, len(frames), PREDICT_FRAMES):
        hi = min(lo + PREDICT_FRAMES, len(frames))
        out[lo:hi] = coefficients(model, _windows_of(padded, lo, hi, width)) @ model.components
    return out.reshape(-1, N_MOUTH, 2)


def rest_mouth(mouth_Tx20x2: np.ndarray, content_TxV: np.ndarray,
               audio_features_4TxF: np.ndarray) -> np.ndarray:
    """``[20, 2]``: the clip's mouth at rest (module docstring, "Target")."""
    rest = np.asarray(content_TxV)[:, REST] == 1.0
    if np.count_nonzero(rest) < MIN_REST_FRAMES:
        energy = log_energy(audio_features_4TxF)[:len(mouth_Tx20x2)]
        rest = energy <= np.quantile(energy, 0.2)
    return np.median(np.asarray(mouth_Tx20x2)[rest], axis=0)


@dataclasses.dataclass(frozen=True)
class LipClip:
    """What the fit reads of a clip: ``landmarks [T, 68, 2]``, ``content [T, V]``,
    ``audio_features [4T, F]``."""
    landmarks: np.ndarray
    content: np.ndarray
    audio_features: np.ndarray


def fit(clips: Sequence[LipClip], val_clips: Sequence[LipClip], inputs: str = "both",
        before: int = DEFAULT_BEFORE, after: int = DEFAULT_AFTER,
        n_components: int = DEFAULT_COMPONENTS, content_lookahead: int = DEFAULT_LOOKAHEAD
        ) -> tuple[LipModel, dict]:
    """Fit on ``clips`` (mirrored copies added), choosing the ridge weight on ``val_clips``;
    their content was decoded with ``content_lookahead`` frames of look-ahead (recorded in the
    model, which generation decodes with).
    Returns the model and a report ``{ridge, val_r [K], kept, explained [K], train_frames,
    ...}``; ValueError when no shape follows the speech on ``val_clips``."""
    if not clips or not val_clips:
        raise ValueError("the lip model needs training and validation clips")

    def arrays(selection, mirrored):
        xs, ys = [], []
        for clip in selection:
            n_frames = min(len(clip.landmarks), len(clip.content),
                           len(clip.audio_features) // 4)
            content = clip.content[:n_frames]
            x = windows(frame_inputs(inputs, content, clip.audio_features, after), before,
                        after)
            for landmarks in [clip.landmarks] + ([landmark_space.mirror(clip.landmarks)]
                                                 if mirrored else []):
                mouth = aligned_mouth(landmarks[:n_frames])
                rest = rest_mouth(mouth, content, clip.audio_features)
                ys.append((mouth - rest).reshape(n_frames, -1))
                xs.append(x)
        return np.concatenate(xs).astype(np.float64), np.concatenate(ys)

    x_train, y_train = arrays(clips, True)
    x_val, y_val = arrays(val_clips, False)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-3
    x_train, x_val = (x_train - mean) / scale, (x_val - mean) / scale
    y_centre = y_train.mean(axis=0)
    _, singular, vt = np.linalg.svd(y_train - y_centre, full_matrices=False)
    components = vt[:n_components]
    c_train, c_val = y_train @ components.T, y_val @ components.T
    bias = c_train.mean(axis=0)
    gram, cross = x_train.T @ x_train, x_train.T @ (c_train - bias)
    best = None
    for ridge in RIDGE_GRID:
        weights = np.linalg.solve(gram + ridge * np.eye(len(gram)), cross)
        error = float(np.mean((x_val @ weights + bias - c_val) ** 2))
        if best is None or error < best[0]:
            best = (error, ridge, weights)
    _, ridge, weights = best
    prediction = x_val @ weights + bias
    val_r = np.array([float(np.corrcoef(prediction[:, k], c_val[:, k])[0, 1])
                      for k in range(n_components)])
    # A shape speech does not predict on unseen speakers would, carried onto the recorded
    # sizes, be noise as large as a real mouth's motion: it is left out.
    kept = np.flatnonzero(val_r >= MIN_VAL_R)
    if len(kept) == 0:
        raise ValueError(f"no mouth shape follows the speech on the validation clips (r = "
                         f"{np.round(val_r, 3).tolist()}, at least {MIN_VAL_R} needed)")
    weights, bias, components = weights[:, kept], bias[kept], components[kept]
    c_train = c_train[:, kept]
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    model = LipModel(inputs, before, after, mean.astype(np.float32), scale.astype(np.float32),
                     weights.astype(np.float32), bias.astype(np.float32),
                     np.quantile(x_train @ weights + bias, levels, axis=0).T.astype(np.float32),
                     np.quantile(c_train, levels, axis=0).T.astype(np.float32),
                     components.astype(np.float32), content_lookahead)
    report = {"inputs": inputs, "ridge": ridge, "val_r": np.round(val_r, 3).tolist(),
              "kept": kept.tolist(),
              "explained": np.round(singular[:n_components] ** 2 / np.sum(singular ** 2),
                                    3).tolist(),
              "train_frames": int(len(x_train)), "val_frames": int(len(x_val)),
              "before": before, "after": after, "content_lookahead": content_lookahead}
    return model, report
