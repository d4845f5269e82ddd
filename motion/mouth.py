"""Mouth opening and speech activity, the measures of a talking mouth (docs/design.md,
"Long generation").

- Mouth opening (:func:`mouth_opening`): for ``landmarks-v1``, the inner-lip gap over the
  inter-ocular distance of the decoded landmarks (``syncers.data.landmark_space``); for
  ``phantom-v1``, the distance between the upper- and lower-lip keypoints over the distance
  between the eyes; other spaces have none.
- Speech energy (:func:`speech_energy`): per video frame, the log-sum-exp of the log-mel bands,
  averaged over the frame's 4 feature rows.
- Pauses (:func:`pauses`): frames whose energy is at or below the sequence's 20th percentile
  for at least 200 ms (5 frames); speech is the other frames.
- :func:`envelope_correlation`: Pearson r between the mouth opening and the speech envelope
  (``exp`` of half the energy: an RMS-like amplitude), at the best lag of 0–3 frames (the
  mouth lagging the sound), the measure "does the mouth open with the syllables".
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_opening
from scipy.special import logsumexp

from syncers.data import landmark_space
from syncers.data.layout import FEATURES_PER_FRAME, LANDMARK_SPACE, PHANTOM_SPACE

PAUSE_QUANTILE = 0.2
PAUSE_FRAMES = 5                     # 200 ms at 25 fps
MAX_LAG = 3
PHANTOM_LIPS, PHANTOM_EYES = (7, 8), (2, 3)


def mouth_opening(keypoints_Tx10x6: np.ndarray, space: str) -> np.ndarray | None:
    """``[T]`` mouth opening of keypoints ``[T, 10, 6]`` (module docstring), or None for a
    space without a known mouth."""
    kp = np.asarray(keypoints_Tx10x6, np.float64)
    if space == LANDMARK_SPACE:
        return landmark_space.mouth_opening(landmark_space.decode(kp)).astype(np.float64)
    if space == PHANTOM_SPACE:
        lips = np.linalg.norm(kp[..., PHANTOM_LIPS[1], :2] - kp[..., PHANTOM_LIPS[0], :2], axis=-1)
        eyes = np.linalg.norm(kp[..., PHANTOM_EYES[1], :2] - kp[..., PHANTOM_EYES[0], :2], axis=-1)
        return lips / np.maximum(eyes, 1e-6)
    return None


def speech_energy(audio_features_4TxF: np.ndarray) -> np.ndarray:
    """``[T]`` log energy per video frame of log-mel features ``[4T, F]``."""
    features = np.asarray(audio_features_4TxF, np.float64)
    n_frames = features.shape[0] // FEATURES_PER_FRAME
    energy = logsumexp(features[:n_frames * FEATURES_PER_FRAME], axis=-1)
    return energy.reshape(n_frames, FEATURES_PER_FRAME).mean(axis=-1)


def pauses(audio_features_4TxF: np.ndarray) -> np.ndarray:
    """``[T]`` bool: frames in a pause (energy at or below the 20th percentile for ≥ 200 ms)."""
    energy = speech_energy(audio_features_4TxF)
    quiet = energy <= np.quantile(energy, PAUSE_QUANTILE)
    # An opening with a 5-frame structuring element keeps exactly the runs of >= 5 frames.
    return binary_opening(quiet, structure=np.ones(PAUSE_FRAMES, bool))




def envelope_correlation(opening_T: np.ndarray, audio_features_4TxF: np.ndarray,
                         max_lag: int = MAX_LAG) -> tuple[float, int]:
    """``(r, lag)``: the best Pearson r between the mouth opening ``[T]`` and the speech
    envelope over lags 0..``max_lag`` frames (opening[t + lag] vs envelope[t])."""
    envelope = np.exp(0.5 * speech_energy(audio_features_4TxF))
    opening = np.asarray(opening_T, np.float64)
    n = min(len(opening), len(envelope))
    best = (-np.inf, 0)
    for lag in range(max_lag + 1):
        a, b = opening[lag:n], envelope[:n - lag]
        if len(a) > 2 and a.std() > 0 and b.std() > 0:
            best = max(best, (float(np.corrcoef(a, b)[0, 1]), lag))
    return (best if np.isfinite(best[0]) else (float("nan"), 0))
