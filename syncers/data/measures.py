"""Measures of a talking mouth and of the speech it follows: the one definition of each that
evaluate, the benches, the articulation and the docs quote (docs/design.md, "Mouth and speech
measures").

Face (iBUG-68 landmarks ``[..., 68, 2]``, :mod:`syncers.data.anatomy`):

- :func:`eye_distance`: between the outer eye corners (36, 45); the unit of every length here.
- :func:`mouth_opening`: the mean gap of the facing inner-lip points 61/67, 62/66, 63/65, in eye
  distances. :func:`keypoint_mouth_opening` is the same for ``landmarks-v1`` keypoints
  (decoded first) and the phantom's lip keypoints for ``phantom-v1``.
- :func:`head_similarity`, :func:`aligned_mouth`: the mouth in the head's frame, aligned onto
  the mean face by the similarity fitted on the rigid landmarks 17–47.

Speech, per 40 ms video frame (25 fps):

- :func:`frame_rms`: the **speech envelope**, RMS of the 16 kHz samples of each frame.
- :func:`mel_loudness` / :func:`frame_mel_loudness`: the **mel loudness** of the log-mel feature
  rows, ``exp(½·log-sum-exp of the bands)``: an RMS-like amplitude of what a model reads, which
  is not the envelope (band-limited by the filterbank, 25 ms windows at a 10 ms hop, and, after
  ``motion.generate.match_features``, each band remapped onto a corpus's distribution). A frame's
  mel loudness is the geometric mean of its four rows'.
- :func:`pauses` (mel loudness at or below its 20th percentile for ≥ 200 ms) and
  :func:`speech_frames` (envelope within 30 dB of the clip's loud frames, gaps under 200 ms
  bridged): the two frame masks.

Correlation: :func:`best_lag_r`, Pearson r of a follower against a leader at the best of a set
of lags. **A constant series has no correlation: r is NaN** (as is a lag leaving fewer than 3
pairs), never 0; a mean over clips skips NaN and says how many clips it used. The mouth follows
the sound by 0–3 frames (``ENVELOPE_LAGS``); two openings of one recording are compared within
±2 frames (``OPENING_LAGS``).

Against the recording (frame by frame, for lip work): :func:`opening_summary` over speech
frames (mean, 90th percentile, share closed, closures per second), :func:`envelope_r`,
:func:`opening_r` and :func:`mouth_landmark_distance` (LMD, the paper's Table 1).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_opening
from scipy.special import logsumexp

from syncers.data import anatomy, landmark_space
from syncers.data.layout import (
    FEATURES_PER_FRAME,
    FPS,
    LANDMARK_SPACE,
    PHANTOM_SPACE,
    SAMPLES_PER_FRAME,
)
from syncers.data.phantom import template as phantom_template

ENVELOPE_LAGS = range(0, 4)          # frames the mouth may lag its sound
OPENING_LAGS = range(-2, 3)          # frames two openings of one recording may be apart
MIN_PAIRS = 3                        # fewer pairs at a lag give no r
PAUSE_QUANTILE = 0.2
PAUSE_FRAMES = 5                     # 200 ms at 25 fps: a shorter quiet is not a pause
SPEECH_RANGE_DB = 30.0               # speech: within this of the clip's loud frames ...
SPEECH_REFERENCE_QUANTILE = 0.95     # ... its 95th-percentile frame RMS
SILENCE_RMS = 1e-4                   # −80 dBFS: below it a frame (or a recording) holds no speech
CLOSED_OPENING = 0.05                # eye distances: lips at most this far apart are closed
LOUDNESS_ROWS = 65536                # log-mel rows mel_loudness reads at a time (11 min)


# --- the face ------------------------------------------------------------------------------------

def _landmarks(landmarks: np.ndarray, name: str = "landmarks") -> np.ndarray:
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.ndim < 2 or landmarks.shape[-2:] != (anatomy.N_LANDMARKS, 2):
        raise ValueError(f"{name} must be [..., 68, 2]; got {tuple(landmarks.shape)}")
    return landmarks


def eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """``[...]``: the distance between the outer eye corners of landmarks ``[..., 68, 2]``."""
    corners = _landmarks(landmarks)[..., anatomy.OUTER_EYE_CORNERS, :]
    return np.linalg.norm(corners[..., 1, :] - corners[..., 0, :], axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """``[...]``: the inner lips' mean gap (61/67, 62/66, 63/65) in eye distances, of landmarks
    ``[..., 68, 2]`` (scale-free: the same for any crop of the face)."""
    landmarks = _landmarks(landmarks)
    gap = np.linalg.norm(landmarks[..., anatomy.UPPER_INNER_LIP, :]
                         - landmarks[..., anatomy.LOWER_INNER_LIP, :], axis=-1)
    return gap.mean(axis=-1) / np.maximum(eye_distance(landmarks), 1e-6)


def brow_heights(landmarks: np.ndarray) -> np.ndarray:
    """``[..., 2]``: each brow's height above its eye (left, right: landmarks 17–21 over 36–41,
    22–26 over 42–47, their means), across the line through the eyes' centres, in eye
    distances: raised brows are higher, a frown or a squint lower, whatever the head's roll."""
    landmarks = _landmarks(landmarks)
    eyes = np.stack([landmarks[..., anatomy.LEFT_EYE, :].mean(axis=-2),
                     landmarks[..., anatomy.RIGHT_EYE, :].mean(axis=-2)], axis=-2)
    brows = np.stack([landmarks[..., anatomy.LEFT_BROW, :].mean(axis=-2),
                      landmarks[..., anatomy.RIGHT_BROW, :].mean(axis=-2)], axis=-2)
    axis = eyes[..., 1, :] - eyes[..., 0, :]
    axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    up = np.stack([axis[..., 1], -axis[..., 0]], axis=-1)        # the axis turned −90°: up, y down
    height = np.sum((brows - eyes) * up[..., None, :], axis=-1)
    return height / np.maximum(eye_distance(landmarks), 1e-6)[..., None]


def brow_motion(landmarks_Tx68x2: np.ndarray) -> dict[str, float]:
    """How the brows move over a clip ``[T, 68, 2]``: ``brow_spread``, the two brows' heights'
    standard deviation over the frames (their mean), and ``brow_asymmetry``, the standard
    deviation of one brow's height minus the other's (one raised as the other falls: a wink or
    a grimace), both in eye distances (:func:`brow_heights`)."""
    heights = brow_heights(landmarks_Tx68x2)
    return {"brow_spread": float(heights.std(axis=0).mean()),
            "brow_asymmetry": float((heights[:, 0] - heights[:, 1]).std())}


def keypoint_mouth_opening(keypoints_Tx10x6: np.ndarray, space: str) -> np.ndarray | None:
    """``[T]`` mouth opening of keypoints ``[T, 10, 6]`` in eye distances: ``landmarks-v1``'s
    decoded landmarks' :func:`mouth_opening`; ``phantom-v1``'s lip keypoints' distance over its
    eye keypoints'; None for a space with no known mouth (``fomm-vox256``)."""
    kp = np.asarray(keypoints_Tx10x6, np.float64)
    if space == LANDMARK_SPACE:
        return mouth_opening(landmark_space.decode(kp))
    if space == PHANTOM_SPACE:
        p = kp[..., :2]
        lips = np.linalg.norm(p[..., phantom_template.LOWER_LIP, :]
                              - p[..., phantom_template.UPPER_LIP, :], axis=-1)
        eyes = np.linalg.norm(p[..., phantom_template.RIGHT_EYE, :]
                              - p[..., phantom_template.LEFT_EYE, :], axis=-1)
        return lips / np.maximum(eyes, 1e-6)
    return None


def head_similarity(landmarks_Tx68x2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame, the similarity taking the frame's rigid landmarks onto the mean face's
    (Procrustes, no reflection): ``aligned = (l − centre) @ rotation · scale + mean_centre``.
    Returns ``rotation [T, 2, 2]``, ``scale [T]`` and ``centre [T, 2]``."""
    points = _landmarks(landmarks_Tx68x2)[:, anatomy.RIGID]
    reference = landmark_space.mean_face()[anatomy.RIGID]
    ref_centred = reference - reference.mean(axis=0)
    centre = points.mean(axis=1)
    centred = points - centre[:, None]
    u, s, vt = np.linalg.svd(np.einsum("tni,nj->tij", centred, ref_centred))
    d = np.sign(np.linalg.det(u @ vt))       # a proper rotation, as for Procrustes
    u[:, :, 1] *= d[:, None]
    s[:, 1] *= d
    rotation = u @ vt
    scale = s.sum(axis=1) / np.maximum((centred ** 2).sum(axis=(1, 2)), 1e-12)
    return rotation, scale, centre


def aligned_mouth(landmarks_Tx68x2: np.ndarray, similarity=None) -> np.ndarray:
    """``[T, 68, 2]`` → the mouth (landmarks 48–67) in the head's frame ``[T, 20, 2]``, in
    mean-face coordinates; ``similarity``: the landmarks' :func:`head_similarity` when already
    computed."""
    landmarks = _landmarks(landmarks_Tx68x2)
    rotation, scale, centre = head_similarity(landmarks) if similarity is None else similarity
    mean_centre = landmark_space.mean_face()[anatomy.RIGID].mean(axis=0)
    mouth = landmarks[:, anatomy.MOUTH] - centre[:, None]
    return np.einsum("tni,tij->tnj", mouth, rotation) * scale[:, None, None] + mean_centre


# --- speech --------------------------------------------------------------------------------------

def frame_rms(samples: np.ndarray, n_frames: int | None = None) -> np.ndarray:
    """The speech envelope ``[T]``: RMS of 16 kHz ``samples [N]`` in each 40 ms video frame.
    ``n_frames`` None: the whole frames (trailing samples dropped, as the features drop them);
    else exactly ``n_frames``, zero-padded past the samples' end."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 1:
        raise ValueError(f"samples must be [N]; got {samples.shape}")
    n = len(samples) // SAMPLES_PER_FRAME if n_frames is None else int(n_frames)
    frames = np.zeros(n * SAMPLES_PER_FRAME)
    take = min(len(samples), len(frames))
    frames[:take] = samples[:take]
    return np.sqrt(np.mean(frames.reshape(n, SAMPLES_PER_FRAME) ** 2, axis=1))


def mel_loudness(audio_features_NxF: np.ndarray) -> np.ndarray:
    """``[N]``: each log-mel row's amplitude ``exp(½ · log-sum-exp of the bands)`` (features
    ``[N, F]``, natural-log energies)."""
    features = np.asarray(audio_features_NxF)
    if features.ndim != 2:
        raise ValueError(f"audio_features must be [N, F]; got {features.shape}")
    out = np.empty(len(features))
    # Row by row's own sum, a block of rows at a time: an hour's float64 copies (75 MB each)
    # are never made.
    for lo in range(0, len(features), LOUDNESS_ROWS):
        block = np.asarray(features[lo:lo + LOUDNESS_ROWS], np.float64)
        out[lo:lo + LOUDNESS_ROWS] = np.exp(0.5 * logsumexp(block, axis=-1))
    return out


def frame_mel_loudness(audio_features_4TxF: np.ndarray) -> np.ndarray:
    """``[T]``: per video frame, the geometric mean of its four rows' :func:`mel_loudness`
    (features ``[4T, F]``; trailing rows of a partial frame dropped)."""
    log_loudness = np.log(mel_loudness(audio_features_4TxF))
    n_frames = len(log_loudness) // FEATURES_PER_FRAME
    per_frame = log_loudness[:n_frames * FEATURES_PER_FRAME].reshape(n_frames, FEATURES_PER_FRAME)
    return np.exp(per_frame.mean(axis=-1))


def pauses(audio_features_4TxF: np.ndarray) -> np.ndarray:
    """``[T]`` bool: frames whose :func:`frame_mel_loudness` is at or below the clip's 20th
    percentile for at least 200 ms (a share of every clip, however it was recorded)."""
    loudness = frame_mel_loudness(audio_features_4TxF)
    quiet = loudness <= np.quantile(loudness, PAUSE_QUANTILE)
    # An opening with a 5-frame structuring element keeps exactly the runs of >= 5 frames.
    return binary_opening(quiet, structure=np.ones(PAUSE_FRAMES, bool))


def _runs(mask_T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, stops)`` of the runs of True in ``mask [T]`` (``stop`` exclusive)."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask_T, np.int8), [0]]))
    return np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)


def speech_frames(envelope_T: np.ndarray) -> np.ndarray:
    """``[T]`` bool: the frames of speech, from the envelope ``[T]`` (:func:`frame_rms`). A frame
    is loud when its RMS is within ``SPEECH_RANGE_DB`` (30 dB) of the clip's 95th-percentile frame
    and above ``SILENCE_RMS`` (−80 dBFS); quiet runs shorter than 200 ms between loud frames are
    speech too (a stop's closure, a syllable boundary: the lips may close there), quiet runs of
    200 ms or more and those at the clip's ends are not."""
    envelope = np.asarray(envelope_T, np.float64)
    if envelope.ndim != 1:
        raise ValueError(f"envelope must be [T]; got {envelope.shape}")
    if len(envelope) == 0:
        return np.zeros(0, bool)
    reference = np.quantile(envelope, SPEECH_REFERENCE_QUANTILE)
    threshold = max(reference * 10 ** (-SPEECH_RANGE_DB / 20), SILENCE_RMS)
    speech = envelope >= threshold
    starts, stops = _runs(~speech)
    for start, stop in zip(starts, stops):
        if start > 0 and stop < len(speech) and stop - start < PAUSE_FRAMES:
            speech[start:stop] = True
    return speech


# --- correlation ---------------------------------------------------------------------------------

def lagged_r(follower_T: np.ndarray, leader_T: np.ndarray, lags) -> np.ndarray:
    """``[len(lags)]``: Pearson r of ``follower[t + lag]`` with ``leader[t]`` per lag (frames;
    positive = the follower comes later), over the frames both have; NaN where either side is
    constant or fewer than ``MIN_PAIRS`` pairs remain."""
    follower = np.asarray(follower_T, np.float64)
    leader = np.asarray(leader_T, np.float64)
    if follower.ndim != 1 or leader.ndim != 1:
        raise ValueError(f"series must be [T]; got {follower.shape} and {leader.shape}")
    n = min(len(follower), len(leader))
    out = []
    for lag in lags:
        a, b = (follower[lag:n], leader[:n - lag]) if lag >= 0 else \
            (follower[:n + lag], leader[-lag:n])
        # ptp, not std: a repeated value's std can round to 1e-18 and give a spurious r
        defined = len(a) >= MIN_PAIRS and np.ptp(a) > 0 and np.ptp(b) > 0
        out.append(float(np.corrcoef(a, b)[0, 1]) if defined else float("nan"))
    return np.array(out)


def best_lag_r(follower_T: np.ndarray, leader_T: np.ndarray,
               lags=ENVELOPE_LAGS) -> tuple[float, int]:
    """``(r, lag)``: the largest :func:`lagged_r` over ``lags`` (the first such lag on a tie);
    ``(nan, lags[0])`` when no lag has an r."""
    lags = list(lags)
    rs = lagged_r(follower_T, leader_T, lags)
    if not np.any(np.isfinite(rs)):
        return float("nan"), lags[0]
    best = int(np.nanargmax(rs))
    return float(rs[best]), lags[best]


def envelope_r(opening_T: np.ndarray, envelope_T: np.ndarray) -> float:
    """r of a mouth opening ``[T]`` with the speech envelope ``[T]`` (or a mel loudness), the
    mouth lagging by the best of 0–3 frames: does the mouth open with the syllables."""
    return best_lag_r(opening_T, envelope_T, ENVELOPE_LAGS)[0]


def opening_r(opening_T: np.ndarray, recorded_T: np.ndarray) -> float:
    """r of a mouth opening ``[T]`` with the recording's ``[T]`` at the best lag within ±2
    frames: does the mouth open when the recorded one did."""
    return best_lag_r(opening_T, recorded_T, OPENING_LAGS)[0]


# --- against the recording -----------------------------------------------------------------------

def opening_summary(opening_T: np.ndarray, speech_T: np.ndarray) -> dict[str, float]:
    """Over the speech frames (``speech [T]`` bool, :func:`speech_frames`) of a mouth opening
    ``[T]`` (eye distances): ``mean``, ``p90`` (90th percentile), ``closed_share`` (share of them
    with the opening below ``CLOSED_OPENING``) and ``closures_per_second`` (closed runs that
    begin on a speech frame after an open one, per second of speech). NaN without speech."""
    opening = np.asarray(opening_T, np.float64)
    speech = np.asarray(speech_T, bool)
    if opening.ndim != 1 or speech.shape != opening.shape:
        raise ValueError(f"opening and speech must both be [T]; got {opening.shape} and "
                         f"{speech.shape}")
    if not speech.any():
        nan = float("nan")
        return {"mean": nan, "p90": nan, "closed_share": nan, "closures_per_second": nan}
    closed = opening < CLOSED_OPENING
    onsets = np.zeros_like(closed)
    onsets[1:] = closed[1:] & ~closed[:-1]
    spoken = opening[speech]
    return {"mean": float(spoken.mean()), "p90": float(np.quantile(spoken, 0.9)),
            "closed_share": float(closed[speech].mean()),
            "closures_per_second": float((onsets & speech).sum() / (speech.sum() / FPS))}


def mouth_landmark_distance(landmarks_Tx68x2: np.ndarray,
                            reference_Tx68x2: np.ndarray) -> np.ndarray:
    """``[T]``: LMD per frame (the paper's Table 1; its mean over frames is the figure), the mean
    distance between the 20 mouth landmarks and the reference's, each face aligned to the mean
    face by its own :func:`head_similarity` (so head pose and size do not count), in the mean
    face's eye distances."""
    landmarks = _landmarks(landmarks_Tx68x2)
    reference = _landmarks(reference_Tx68x2, "reference")
    if landmarks.ndim != 3 or reference.shape != landmarks.shape:
        raise ValueError(f"landmarks and reference must both be [T, 68, 2]; got "
                         f"{landmarks.shape} and {reference.shape}")
    gap = np.linalg.norm(aligned_mouth(landmarks) - aligned_mouth(reference), axis=-1)
    return gap.mean(axis=-1) / eye_distance(landmark_space.mean_face())
