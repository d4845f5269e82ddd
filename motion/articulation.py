"""Speech-driven articulation: the mouth's shape from a window of audio, added to the generated
motion (docs/design.md, "Articulation"; a departure from the paper).

MS-Sync's finest branch (eq. 10, level 1, 200 ms) is the paper's only path from syllables to the
lips. Trained on real talking heads, whose mouth opening follows loudness weakly (r about 0.12
by every measure: docs/design.md, "Mouth and speech measures"), an autoregressive generator
learns a mouth that barely follows the syllables: averaged over a corpus, what the previous
frames predict outweighs what the audio does. The articulation is a
second, non-autoregressive path for the mouth alone:

- **Target.** Per frame, the 20 mouth landmarks (48–67) in the head's frame: aligned onto the
  mean face by the similarity that best maps the frame's rigid landmarks (17–47: brows, eyes,
  nose) onto the mean face's, minus the clip's median aligned mouth over its quietest fifth of
  frames (the speaker's own mouth shape and rest pose are not speech; silence is the rest).
  Its first ``K`` principal components ``c [T, K]`` (the opening first: 56 % of the mouth's
  variance on the real corpus; ``K = 1`` by default) are what is predicted.
- **Input.** The loudness of every 10 ms feature row of frames ``t − 6 .. t + 1``: an RMS-like
  amplitude, ``exp(½ · log-sum-exp of the bands)`` of the corpus-matched features
  (``syncers.data.features.match_features``), divided by its spread over the training set:
  ``[T, 8·4]``. Not centred and with no intercept, so silence maps to no offset: the photo's
  own mouth. The corpus's mouths lead their sound (a filter reading three frames ahead peaks
  two frames ahead, 80 ms; some clips were joined to their audio without a sync check), but a
  mouth that opens before the sound looks early, so one frame of look-ahead is read.
- **Map.** Ridge regression ``ĉ = x W`` (closed form, no intercept, the ridge weight chosen on
  the validation split), then each component scaled by ``std(c) / std(ĉ)`` on the training set
  (components whose validation r is under 0.1 are dropped: scaled up, they would be noise) and
  by an opening gain (13). A regression from speech predicts the mouth's mean given the sound,
  whose spread is a fraction of a real mouth's (on the real corpus an eighth: validation r
  0.13); scaled back, the mouth opens at the times the sound says: the timing comes from the
  loudness, the size from real mouths, enlarged because the corpus's dlib mouths open a few
  pixels, which on a photo reads as a mouth that barely moves. The gain enlarges the lips'
  parting only: the sideways motion keeps its recorded size and the upper lip stays put (the
  component's common vertical motion of the upper lip is taken out of all 20 landmarks).
- **Response.** Each component (oriented so that louder is larger) opens the mouth by what it
  exceeds a rest level, the training frames' 60th percentile, and leaves the photo's mouth
  below it (:func:`above_rest`). The features are matched to the corpus first, so every
  recording reaches the rest level on about the same share of its frames. The inner lips' gap
  approaches the widest real opening (``MAX_OPENING``, 0.6 of the mouth's width) softly
  (:func:`opening_factor`).

What was tried on the real corpus (22 held-out clips; r of the predicted opening with the speech
envelope at the best lag 0–3, and with the recorded opening at lag 0; ``syncers.data.measures``:
``envelope_r``, ``frame_rms``, ``lagged_r``):

    input, reference, window                     r with envelope   r with recording
    log-mel window, clip median, t−4..t+3              0.33              0.33
    log loudness, clip median, t−4..t+3                0.49              0.19
    amplitude, clip median, t−4..t+3                   0.58              0.21
    amplitude, quiet frames, t−4..t+3                  0.63              0.21
    amplitude, quiet frames, t−6..t+1 (default)        0.74              0.18

(the recorded mouths' dlib landmarks: 0.18 with the envelope by the same measure; these rows
are the linear response). The log-domain inputs, and any linear response, swing the mouth
about a half-open median, so its pixels change as much in quiet frames as in loud ones; a viewer
judges a talking mouth by its syllables. With the default response (above the rest level, gain
13, limited) the opening follows the envelope at 0.70.
- **Use.** ``offsets [T, 20, 2] = ĉ · components``, rotated and scaled from the mean face into
  each generated frame's head pose (the same similarity, inverted), moved onto the 10 keypoints
  by the (linear) landmark fit ``syncers.data.landmark_space.encode``, added to the generator's
  own lip motion. The chin drops with the lower lip (:func:`jaw_drop`), and the lopsided part of
  the generated lips' change from the source's mouth is taken out (:func:`lopsidedness`):
  keypoints change only in the mouth's groups (5–8) and the jaw's (9).

``msync train articulation`` fits one from a prepared dataset (one with landmarks, i.e. the
``landmarks-v1`` space) and stores it in a saved model's ``model.json`` under
``"articulation"``; ``msync generate`` and ``Streamer`` apply it, scaled by ``--lip-scale``.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from syncers.data import anatomy, landmark_space
from syncers.data.features import match_features
from syncers.data.layout import FEATURES_PER_FRAME, KEYPOINT_DIM, N_KEYPOINTS
from syncers.data.measures import aligned_mouth, head_similarity, mel_loudness

N_MOUTH = len(anatomy.MOUTH)
MOUTH_GROUPS = (5, 6, 7, 8)                  # the keypoints whose landmarks are the mouth's
JAW_GROUP = 9                                # landmarks 0–16
# Indices among the mouth's 20 landmarks (48–67): the outer lower lip's middle; the upper lip's
# middle, outer and inner.
LOWER_LIP_CENTRE = 57 - 48
UPPER_LIP = np.array([50, 51, 52, 61, 62, 63]) - 48
# Frames :func:`apply` moves at a time (41 s of video, the rollout's piece): memory flat in the
# length of the speech.
APPLY_FRAMES = 1024
JAW_FOLLOW = 0.5             # of the lower lip's drop, the chin's
# The mouth's 20 landmarks' mirror images among themselves (iBUG's left/right pairs).
MOUTH_MIRROR = anatomy.MIRROR[anatomy.MOUTH] - anatomy.MOUTH[0]
DEFAULT_BEFORE, DEFAULT_AFTER = 6, 1         # frames of audio before/after: 240 ms / 40 ms
DEFAULT_COMPONENTS = 1                       # the opening
RIDGE_GRID = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
QUIET_QUANTILE = 0.2         # a clip's quietest fifth of frames shows its rest mouth
MIN_VAL_R = 0.1              # a component kept must follow speech on the validation clips
# Times the recorded spread: a corpus's dlib mouths open a few pixels, which on a photo reads
# as a mouth that barely moves; 13 times that (the limit below rounding off the loudest
# syllables) opens to the teeth on stressed syllables, the jaw following and the lopsided part
# of the generator's lips taken out (docs/design.md, "Articulation", has the gains measured).
DEFAULT_OPENING_GAIN = 13.0
REST_QUANTILE = 0.6          # of the training frames' coefficients: the rest level
# The inner lips' largest gap, as a share of the mouth's width: the real corpus's widest opening
# (dlib landmarks of its 217 clips: 99th percentile 0.33, largest 0.6). The opening approaches
# it softly (:func:`opening_factor`).
MAX_OPENING = 0.6
UPPER_INNER_LIP, LOWER_INNER_LIP = 62 - 48, 66 - 48
LEFT_CORNER, RIGHT_CORNER = anatomy.MOUTH_CORNERS - anatomy.MOUTH[0]


@dataclasses.dataclass(frozen=True)
class Articulation:
    """A fitted map from audio windows to mouth offsets (module docstring).

    ``feature_mean``, ``feature_scale``: ``[D]``, ``D = (before + after + 1)·4·F``;
    ``weights``: ``[D, K]`` (the gain folded in); ``components``: ``[K, 40]`` (the mouth's 20
    landmarks × (x, y), in mean-face coordinates). ``rest_level``: ``[K]``, the coefficient a
    sound must exceed to open the mouth (:func:`above_rest`); None = the linear response of the
    first format (a coefficient is used as it is)."""
    before: int
    after: int
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    weights: np.ndarray
    components: np.ndarray
    rest_level: np.ndarray | None = None

    def to_json(self) -> dict:
        rest = {} if self.rest_level is None else {"rest_level": self.rest_level.tolist()}
        return {"before": self.before, "after": self.after, **rest,
                "feature_mean": self.feature_mean.tolist(),
                "feature_scale": self.feature_scale.tolist(),
                "weights": self.weights.tolist(), "components": self.components.tolist()}


def from_json(raw: dict) -> Articulation:
    """The :class:`Articulation` ``model.json`` stores; ValueError naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("articulation must be an object")
    missing = {"before", "after", "feature_mean", "feature_scale", "weights",
               "components"} - set(raw)
    if missing:
        raise ValueError(f"articulation lacks {sorted(missing)}")
    before, after = raw["before"], raw["after"]
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 50
               for v in (before, after)):
        raise ValueError("articulation before/after must be integers in 0..50")
    try:
        arrays = {k: np.asarray(raw[k], np.float32)
                  for k in ("feature_mean", "feature_scale", "weights", "components")}
    except (TypeError, ValueError):
        raise ValueError("articulation arrays must be lists of numbers") from None
    d = arrays["feature_mean"].shape
    window = (before + after + 1) * FEATURES_PER_FRAME
    if (d != (window,) or arrays["feature_scale"].shape != d
            or arrays["weights"].ndim != 2 or arrays["weights"].shape[0] != d[0]
            or arrays["components"].shape != (arrays["weights"].shape[1], 2 * N_MOUTH)):
        raise ValueError(f"articulation arrays disagree: feature_mean {d}, feature_scale "
                         f"{arrays['feature_scale'].shape}, weights {arrays['weights'].shape}, "
                         f"components {arrays['components'].shape} (expected [D], [D], [D, K], "
                         f"[K, {2 * N_MOUTH}] with D = {window}, 4 loudness rows per frame of "
                         f"the window)")
    if not all(np.all(np.isfinite(a)) for a in arrays.values()) or \
            np.any(arrays["feature_scale"] <= 0):
        raise ValueError("articulation arrays must be finite, feature_scale positive")
    rest_level = raw.get("rest_level")
    if rest_level is not None:
        try:
            rest_level = np.asarray(rest_level, np.float32)
        except (TypeError, ValueError):
            raise ValueError("articulation rest_level must be a list of numbers") from None
        if rest_level.shape != (arrays["weights"].shape[1],) or \
                not np.all(np.isfinite(rest_level)):
            raise ValueError(f"articulation rest_level must be {arrays['weights'].shape[1]} "
                             f"finite numbers, one per component; got shape {rest_level.shape}")
    return Articulation(before, after, rest_level=rest_level, **arrays)


def loudness(audio_features_NxF: np.ndarray) -> np.ndarray:
    """``[N, F]`` log-mel rows → ``[N, 1]`` float32: each row's mel loudness
    (``syncers.data.measures.mel_loudness``), what the articulation reads."""
    return mel_loudness(audio_features_NxF)[:, None].astype(np.float32)


def audio_windows(loudness_4Tx1: np.ndarray, before: int, after: int) -> np.ndarray:
    """``[4T, C]`` → ``[T, (before + after + 1)·4C]``: each frame's rows with those of the
    ``before`` frames before and ``after`` after it, the first and last frame repeated past the
    ends (what a stream knows at its ends)."""
    features = np.asarray(loudness_4Tx1, np.float32)
    n_frames = features.shape[0] // FEATURES_PER_FRAME
    per_frame = features[:n_frames * FEATURES_PER_FRAME].reshape(n_frames, -1)
    padded = np.pad(per_frame, ((before, after), (0, 0)), mode="edge")
    return np.concatenate([padded[i:i + n_frames] for i in range(before + after + 1)], axis=1)


def predict(articulation: Articulation, audio_features_4TxF: np.ndarray) -> np.ndarray:
    """Mouth offsets ``[T, 20, 2]`` in mean-face coordinates from features ``[4T, F]``."""
    features = np.asarray(audio_features_4TxF, np.float32)
    if features.ndim != 2:
        raise ValueError(f"audio_features must be [4T, F]; got {features.shape}")
    return predict_windows(articulation, audio_windows(loudness(features), articulation.before,
                                                       articulation.after))


def predict_windows(articulation: Articulation, windows_TxD: np.ndarray) -> np.ndarray:
    """Mouth offsets ``[T, 20, 2]`` from audio windows ``[T, D]`` (:func:`audio_windows`)."""
    opening = coefficients(articulation, windows_TxD)
    if articulation.rest_level is not None:
        opening = above_rest(opening, articulation.rest_level)
    return offsets(articulation, opening)


def coefficients(articulation: Articulation, windows_TxD: np.ndarray) -> np.ndarray:
    """The linear map's coefficients ``[T, K]`` (larger = louder) of audio windows ``[T, D]``."""
    return ((np.asarray(windows_TxD, np.float32) - articulation.feature_mean)
            / articulation.feature_scale) @ articulation.weights


def above_rest(coefficients_TxK: np.ndarray, rest_level_K: np.ndarray) -> np.ndarray:
    """``[T, K]``: each coefficient's excess over ``rest_level [K]``, clipped at zero. With the
    rest level the training frames' ``REST_QUANTILE`` (60th percentile) coefficient
    (:func:`fit`), the mouth rests as in the photo on the quieter three fifths of the frames and
    opens on the louder two fifths in proportion: its pixels change with the syllables, not
    about a half-open mean. The audio is matched to the corpus's distribution first
    (``syncers.data.features.match_features``), so a loud and a quiet recording reach the rest level
    on about the same share of their frames."""
    return np.maximum(np.asarray(coefficients_TxK, np.float32)
                      - np.asarray(rest_level_K, np.float32), 0.0)


def offsets(articulation: Articulation, coefficients_TxK: np.ndarray) -> np.ndarray:
    """Mouth offsets ``[T, 20, 2]`` in mean-face coordinates from coefficients ``[T, K]``."""
    return (np.asarray(coefficients_TxK, np.float32)
            @ articulation.components).reshape(-1, N_MOUTH, 2)


def jaw_drop(offsets_Tx20x2: np.ndarray) -> np.ndarray:
    """``[T, 17, 2]`` offsets of the jaw line (landmarks 0–16) in mean-face coordinates for
    mouth offsets ``[T, 20, 2]``: the chin (landmark 8) drops as far as the lower lip's middle
    and the jaw line with it, less and less up to its ends by the ears (0 and 16), which stay.
    A lower lip that opened alone would squeeze the skin under it against a chin that does not
    move, and the mesh renderer would fold it into a seam."""
    face = landmark_space.mean_face()
    top = face[[0, 16], 1].mean()
    share = np.clip((face[anatomy.JAW, 1] - top) / (face[anatomy.CHIN, 1] - top), 0.0, 1.0)
    drop = np.maximum(np.asarray(offsets_Tx20x2, np.float64)[:, LOWER_LIP_CENTRE, 1], 0.0)
    out = np.zeros((len(drop), len(anatomy.JAW), 2))
    out[..., 1] = JAW_FOLLOW * drop[:, None] * share[None]
    return out


def opening_factor(offsets_Tx20x2: np.ndarray, mouth_Tx20x2: np.ndarray,
                   reference_20x2: np.ndarray) -> np.ndarray:
    """``[T]`` factors in [0, 1] for mouth ``offsets [T, 20, 2]`` added to ``mouth [T, 20, 2]``
    (both in the head's frame) so that the inner lips' gap approaches ``MAX_OPENING`` of the
    ``reference [20, 2]`` mouth's width softly: an offset that would open it by ``a`` opens it by
    ``h · tanh(a / h)``, ``h`` the gap left to the limit. A linear response to loudness has no
    limit: on the loudest syllables of some recordings the lower lip fell past the chin."""
    offsets = np.asarray(offsets_Tx20x2, np.float64)
    mouth = np.asarray(mouth_Tx20x2, np.float64)
    width = np.linalg.norm(reference_20x2[RIGHT_CORNER] - reference_20x2[LEFT_CORNER])
    # The middle pair's vertical gap in the head's frame, in the offsets' own units and
    # direction (what an offset adds to), not the measured opening in eye distances.
    gap = mouth[:, LOWER_INNER_LIP, 1] - mouth[:, UPPER_INNER_LIP, 1]
    headroom = np.maximum(MAX_OPENING * width - gap, 0.0)
    added = offsets[:, LOWER_INNER_LIP, 1] - offsets[:, UPPER_INNER_LIP, 1]
    opening = added > 1e-12 * width
    safe_added = np.where(opening, added, 1.0)
    safe_headroom = np.maximum(headroom, 1e-12 * width)
    return np.where(opening, safe_headroom * np.tanh(safe_added / safe_headroom) / safe_added,
                    1.0)


def lopsidedness(mouth_Tx20x2: np.ndarray, reference_20x2: np.ndarray) -> np.ndarray:
    """``[T, 20, 2]``: the part of the mouth's change from ``reference [20, 2]`` (both in the
    head's frame, :func:`aligned_mouth`) that its mirror image does not share, the change minus
    its symmetric half: one corner rising more than the other, the lips twisting, the whole
    mouth sliding sideways under the nose (the bundled generator slides it by up to a fifth of
    its width)."""
    change = np.asarray(mouth_Tx20x2, np.float64) - np.asarray(reference_20x2, np.float64)
    mirrored = change[:, MOUTH_MIRROR] * np.array([-1.0, 1.0])
    return 0.5 * (change - mirrored)


def apply(keypoints_Tx10x6: np.ndarray, offsets_Tx20x2: np.ndarray, scale: float = 1.0,
          reference_10x6: np.ndarray | None = None) -> np.ndarray:
    """``landmarks-v1`` keypoints ``[T, 10, 6]`` with the mouth moved by ``scale ×`` offsets
    ``[T, 20, 2]`` (mean-face coordinates, turned into each frame's head pose; the opening
    limited by :func:`opening_factor`), the jaw dropped
    with the lower lip (:func:`jaw_drop`) and the mouth's lopsided change from the
    ``reference`` keypoints ``[10, 6]`` (default: the first frame; the source's x0) taken out
    (:func:`lopsidedness`: a generator's mouth corners that move unevenly twist the mouth once
    it opens wide). Only keypoints 5–9 change; ``scale = 0`` returns the keypoints unchanged."""
    keypoints = np.asarray(keypoints_Tx10x6, np.float32)
    offsets_Tx20x2 = np.asarray(offsets_Tx20x2)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"keypoints must be [T, {N_KEYPOINTS}, {KEYPOINT_DIM}]; got "
                         f"{keypoints.shape}")
    if offsets_Tx20x2.shape != (keypoints.shape[0], N_MOUTH, 2):
        raise ValueError(f"offsets must be [T={keypoints.shape[0]}, {N_MOUTH}, 2]; got "
                         f"{offsets_Tx20x2.shape}")
    if scale == 0 or keypoints.shape[0] == 0:
        return keypoints.copy()
    reference = keypoints[0] if reference_10x6 is None else \
        np.asarray(reference_10x6, np.float32)
    if reference.shape != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"reference must be [{N_KEYPOINTS}, {KEYPOINT_DIM}]; got "
                         f"{reference.shape}")
    if keypoints.shape[0] > APPLY_FRAMES:
        # Each frame's mouth is its own: in pieces, an hour's float64 landmarks and their
        # changes (≈ 100 MB per 10 min) are never held at once.
        out = np.empty_like(keypoints)
        for lo in range(0, keypoints.shape[0], APPLY_FRAMES):
            out[lo:lo + APPLY_FRAMES] = apply(keypoints[lo:lo + APPLY_FRAMES],
                                              offsets_Tx20x2[lo:lo + APPLY_FRAMES], scale,
                                              reference)
        return out
    offsets = np.asarray(offsets_Tx20x2, np.float64)
    landmarks = landmark_space.decode(keypoints).astype(np.float64)
    similarity = head_similarity(landmarks)
    rotation, head_scale, _ = similarity
    in_head = np.zeros_like(landmarks)
    reference_mouth = aligned_mouth(landmark_space.decode(reference[None]))[0]
    mouth = aligned_mouth(landmarks, similarity)
    lopsided = lopsidedness(mouth, reference_mouth)
    offsets = scale * offsets
    offsets = offsets * opening_factor(offsets, mouth - lopsided, reference_mouth)[:, None, None]
    in_head[:, anatomy.MOUTH] = offsets - lopsided
    in_head[:, anatomy.JAW] = jaw_drop(offsets)
    # aligned = l @ R · s  ⇒  a change Δ in the head's frame is Δ @ Rᵀ / s in the image
    delta = np.einsum("tnj,tij->tni", in_head, rotation) / head_scale[:, None, None]
    # encode is linear in the landmarks (a fixed canonical face), so its change is that of Δ;
    # Δ is zero outside the mouth and the jaw, whose landmarks are all of groups 5–9.
    change = landmark_space.encode(landmarks + delta) - landmark_space.encode(landmarks)
    out = keypoints.copy()
    moved = MOUTH_GROUPS + (JAW_GROUP,)
    out[:, moved] += change[:, moved]
    return out


def articulate(articulation: Articulation | None, keypoints_BxTx10x6: np.ndarray,
               audio_features_Bx4TxF: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A batch of generated keypoints ``[B, T, 10, 6]`` with the mouths of their audio
    ``[B, 4T', F]`` (T' ≥ T) added, as ``msync generate`` adds them (``articulation`` None: the
    keypoints as they are)."""
    keypoints = np.asarray(keypoints_BxTx10x6, np.float32)
    if articulation is None:
        return keypoints
    return np.stack([apply(k, predict(articulation, a)[:len(k)], scale)
                     for k, a in zip(keypoints, audio_features_Bx4TxF)])


def fit(clips: Sequence, val_clips: Sequence, quantiles_QxF: np.ndarray | None,
        before: int = DEFAULT_BEFORE, after: int = DEFAULT_AFTER,
        n_components: int = DEFAULT_COMPONENTS, rectified: bool = True,
        opening_gain: float = DEFAULT_OPENING_GAIN) -> tuple[Articulation, dict]:
    """Fit on clips with landmarks (``syncers.data.dataset.Clip``: ``landmarks [T, 68, 2]``,
    ``audio_features [4T, F]``; mirrored copies are added), choosing the ridge weight on
    ``val_clips``. Features are quantile-matched onto ``quantiles`` first when given, as
    ``generate`` does. Each component is oriented so that louder means a larger coefficient,
    scaled to the recorded spread times ``opening_gain`` and, ``rectified``, applied above its
    ``REST_QUANTILE`` over the training frames (else linearly). Returns the map and a report
    ``{ridge, val_r, gain, explained, rest_level, ...}``."""
    if not (np.isfinite(opening_gain) and opening_gain > 0):
        raise ValueError(f"opening_gain must be a positive number; got {opening_gain}")

    def arrays(selection, mirrored):
        inputs, targets = [], []
        for clip in selection:
            if clip.landmarks is None:
                raise ValueError(f"clip {clip.clip_id} has no landmarks: the articulation is "
                                 f"fitted on a landmarks-v1 dataset (msync data prepare)")
            features = clip.audio_features if quantiles_QxF is None else \
                match_features(clip.audio_features, quantiles_QxF)
            windows = audio_windows(loudness(features), before, after)
            variants = [clip.landmarks] + ([landmark_space.mirror(clip.landmarks)]
                                           if mirrored else [])
            frame_loudness = loudness(features)[:4 * len(windows)].reshape(len(windows), 4)
            quiet = frame_loudness.mean(axis=1) <= np.quantile(frame_loudness.mean(axis=1),
                                                               QUIET_QUANTILE)
            for landmarks in variants:
                mouth = aligned_mouth(landmarks[:windows.shape[0]])
                # the mouth relative to the speaker's own mouth when quiet: silence is the rest
                targets.append((mouth - np.median(mouth[quiet], axis=0)).reshape(len(mouth), -1))
                inputs.append(windows)
        return np.concatenate(inputs), np.concatenate(targets)

    if not clips or not val_clips:
        raise ValueError("the articulation needs training and validation clips")
    x_train, y_train = arrays(clips, True)
    x_val, y_val = arrays(val_clips, False)
    # No centring and no intercept: silence (loudness ~0) maps to no offset, the rest mouth.
    mean = np.zeros(x_train.shape[1])
    scale = np.full(x_train.shape[1], x_train.std() + 1e-6)
    x_train, x_val = x_train / scale, x_val / scale
    y_centre = y_train.mean(axis=0)
    _, singular, vt = np.linalg.svd(y_train - y_centre, full_matrices=False)
    components = vt[:n_components]
    c_train, c_val = y_train @ components.T, y_val @ components.T
    gram, cross = x_train.T @ x_train, x_train.T @ c_train
    best = None
    for ridge in RIDGE_GRID:
        weights = np.linalg.solve(gram + ridge * np.eye(len(gram)), cross)
        error = float(np.mean((x_val @ weights - c_val) ** 2))
        if best is None or error < best[0]:
            best = (error, ridge, weights)
    _, ridge, weights = best
    prediction = x_val @ weights
    val_r = np.array([float(np.corrcoef(prediction[:, k], c_val[:, k])[0, 1])
                      for k in range(n_components)])
    # A component speech does not predict on unseen clips would only be noise scaled up.
    gain = np.where(val_r >= MIN_VAL_R, c_train.std(axis=0)
                    / np.maximum((x_train @ weights).std(axis=0), 1e-12), 0.0) * opening_gain
    # Loudness inputs are positive: a component whose weights sum negative closes with the
    # sound; flipping it with its weights changes no offset and makes "above rest" = opening.
    orientation = np.where(weights.sum(axis=0) < 0, -1.0, 1.0)
    weights, components = weights * orientation, components * orientation[:, None]
    weights = weights * gain
    # The gain enlarges how far the lips part; their sideways motion keeps its recorded size
    # (a real mouth's width changes little as it opens, and enlarged as much, the corners drew
    # together into a round "O" on every loud syllable).
    components = components * np.tile([1.0 / opening_gain, 1.0], N_MOUTH)
    # The upper lip rides on the skull: an opening moves the lower lip and the chin. The
    # recorded component also moves the upper lip down with them (a nod the alignment on the
    # brows, eyes and nose leaves in); enlarged, that slid the whole mouth onto the chin and
    # folded the skin between the lower lip and the jaw line.
    components = components.reshape(len(components), N_MOUTH, 2)
    components[..., 1] -= components[:, UPPER_LIP, 1].mean(axis=1, keepdims=True)
    components = components.reshape(len(components), 2 * N_MOUTH)
    rest_level = np.quantile(x_train @ weights, REST_QUANTILE, axis=0) if rectified else None
    report = {"ridge": ridge, "gain": np.round(gain, 3).tolist(),
              "opening_gain": float(opening_gain),
              "rest_level": None if rest_level is None else np.round(rest_level, 4).tolist(),
              "val_r": np.round(val_r, 3).tolist(),
              "explained": np.round(singular[:n_components] ** 2
                                    / np.sum(singular ** 2), 3).tolist(),
              "train_frames": int(len(x_train)), "val_frames": int(len(x_val)),
              "before": before, "after": after}
    articulation = Articulation(before, after, mean.astype(np.float32),
                                scale.astype(np.float32), weights.astype(np.float32),
                                components.astype(np.float32),
                                None if rest_level is None else rest_level.astype(np.float32))
    return articulation, report
