"""Spontaneous blinks: measured on recorded landmarks, generated for a video, applied to
``landmarks-v1`` keypoints (docs/design.md, "Blinks").

The generator's motion has no blinks (its eye keypoints follow speech, which blinking does not),
so they are added afterwards as an independent process: intervals between blink onsets from a
gamma distribution (shape ``BlinkConfig.regularity``: more regular than a Poisson process, and
never closer than ``min_interval_s``), each blink's duration log-normal. A blink's closure
rises over 40 % of its lid movement and falls over 60 % (lids close faster than they open);
its duration is the time the eye is more than half closed, as ``detect`` measures it on
recordings from the eye aspect ratio (Soukupová and Čech, "Real-time eye blink detection using
facial landmarks", 2016). The renderer covers a closing eye with its lid
(``render/interior.py``); here a closure ``c`` squeezes each eye keypoint's jacobian along the
eye's normal to ``1 − c·(1 − SHUT_HEIGHT)`` of its height.

    closure = generate(key, n_frames, fps)                  # [T] in [0, 1]
    keypoints = apply(keypoints, closure)                   # [T, 10, 6]
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import median_filter

from syncers.data import landmark_space

EYE_KEYPOINTS = (2, 3)          # landmark_space.GROUPS: left eye, right eye
SHUT_HEIGHT = 0.05              # a shut eye's keypoint height, share of its open height
CLOSING_SHARE = 0.4             # of a blink's lid movement, the share spent closing
# per eye: corners, then (upper, lower) lid pairs (dlib's 68-point scheme)
EYES = (((36, 39), ((37, 41), (38, 40))), ((42, 45), ((43, 47), (44, 46))))


@dataclasses.dataclass(frozen=True)
class BlinkConfig:
    """The blink process. Defaults: ``python -m bench.blink_rate`` on the real corpus
    (docs/design.md, "Blinks")."""

    rate_per_min: float = 15.0       # mean blinks per minute
    regularity: float = 2.0          # gamma shape of the intervals (1 = Poisson)
    min_interval_s: float = 0.6      # no blink starts sooner after another
    duration_s: float = 0.16         # median duration (eye more than half closed)
    duration_spread: float = 0.25    # log-normal σ of the duration
    min_duration_s: float = 0.12     # (whole frames at 25 fps: 3 to 10, 0.12–0.4 s)
    max_duration_s: float = 0.36


@dataclasses.dataclass(frozen=True)
class Blinks:
    """Blinks found in a recording: ``onsets`` ``[n]`` (frame where the eye first is more than
    half closed) and ``durations_s`` ``[n]``."""

    onsets: np.ndarray
    durations_s: np.ndarray


def eye_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """``[..., 68, 2]`` → ``[...]``: the eyes' height over width (mean of the two lid pairs,
    mean of both eyes)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[-2:] != (landmark_space.N_LANDMARKS, 2):
        raise ValueError(f"landmarks must be [..., 68, 2]; got {tuple(lm.shape)}")
    ratios = []
    for (a, b), pairs in EYES:
        width = np.linalg.norm(lm[..., b, :] - lm[..., a, :], axis=-1)
        height = sum(np.linalg.norm(lm[..., lo, :] - lm[..., up, :], axis=-1)
                     for up, lo in pairs) / len(pairs)
        ratios.append(height / np.maximum(width, 1e-9))
    return sum(ratios) / len(ratios)


def detect(ear: np.ndarray, fps: float, drop: float = 0.2, baseline_s: float = 2.0) -> Blinks:
    """Blinks in an eye-aspect-ratio track ``ear [T]``: runs of frames whose closure
    ``1 − ear / baseline`` (baseline: the running median over ``baseline_s``) exceeds ``drop``
    and reaches at least twice that at its deepest; the duration is the time the closure stays
    above half its deepest value (runs apart by one frame are one blink)."""
    ear = np.asarray(ear, np.float64)
    if ear.ndim != 1:
        raise ValueError(f"ear must be [T]; got {tuple(ear.shape)}")
    window = max(3, int(round(baseline_s * fps)) | 1)
    baseline = median_filter(ear, size=window, mode="nearest")
    closure = 1.0 - ear / np.maximum(baseline, 1e-9)
    low = closure > drop
    low[1:-1] |= low[:-2] & low[2:]                     # bridge one-frame gaps
    onsets, durations = [], []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], low.astype(np.int8), [0]])))
    for start, end in zip(edges[::2], edges[1::2]):
        peak = closure[start:end].max()
        if peak < 2 * drop:
            continue
        lo, hi = start, end
        while lo > 0 and closure[lo - 1] > peak / 2:
            lo -= 1
        while hi < len(closure) and closure[hi] > peak / 2:
            hi += 1
        half = np.flatnonzero(closure[lo:hi] > peak / 2)
        onsets.append(lo + half[0])
        durations.append(len(half) / fps)
    return Blinks(np.asarray(onsets, np.int64), np.asarray(durations, np.float64))


def _profile(t, duration):
    """Closure at times ``t`` after a blink's onset of movement for a blink whose
    half-closed time is ``duration`` (smooth rise, slower smooth fall)."""
    movement = duration / 0.5              # a smoothstep is above ½ for half its span
    rise, fall = CLOSING_SHARE * movement, (1.0 - CLOSING_SHARE) * movement
    smooth = lambda x: jnp.clip(x, 0.0, 1.0) ** 2 * (3.0 - 2.0 * jnp.clip(x, 0.0, 1.0))
    return jnp.where(t < rise, smooth(t / rise), 1.0 - smooth((t - rise) / fall)) \
        * (t >= 0) * (t <= movement)


def generate(key: jax.Array, n_frames: int, fps: float,
             config: BlinkConfig = BlinkConfig()) -> np.ndarray:
    """Eye closure ``[n_frames]`` in [0, 1] (1 = shut) of a blink process drawn with ``key``."""
    if n_frames < 0 or fps <= 0:
        raise ValueError(f"need n_frames >= 0 and fps > 0; got {n_frames}, {fps}")
    seconds = n_frames / fps
    mean_interval = 60.0 / config.rate_per_min
    n_max = int(math.ceil(seconds / config.min_interval_s)) + 2
    k_first, k_gap, k_dur = jax.random.split(key, 3)
    # gamma intervals with the configured mean, beyond the refractory minimum
    spread = max(mean_interval - config.min_interval_s, 1e-3)
    gaps = config.min_interval_s + jax.random.gamma(k_gap, config.regularity, (n_max,)) \
        * spread / config.regularity
    # the first onset within one mean interval but not before min_interval_s: the first frame
    # is the photo as it is
    first = jax.random.uniform(k_first, (), minval=config.min_interval_s,
                               maxval=max(mean_interval, config.min_interval_s))
    onsets = first + jnp.concatenate([jnp.zeros(1), jnp.cumsum(gaps)[:-1]])
    durations = jnp.clip(config.duration_s * jnp.exp(
        config.duration_spread * jax.random.normal(k_dur, (n_max,))),
        config.min_duration_s, config.max_duration_s)
    # each blink touches the frames of its lid movement only (at most 2·max_duration_s)
    span = int(math.ceil(2 * config.max_duration_s * fps)) + 2
    frames = jnp.ceil(onsets * fps).astype(jnp.int32)[:, None] + jnp.arange(span)   # [n, W]
    values = _profile(frames / fps - onsets[:, None], durations[:, None])
    closure = jnp.zeros(n_frames, jnp.float32).at[frames].max(values, mode="drop")
    return np.asarray(closure, np.float32)


def apply(keypoints: np.ndarray, closure: np.ndarray) -> np.ndarray:
    """``landmarks-v1`` keypoints ``[T, 10, 6]`` with their eyes closed by ``closure [T]``: each
    eye keypoint's jacobian squeezed along the eye's normal (its axis: the jacobian's first
    column), to ``1 − closure·(1 − SHUT_HEIGHT)`` of its height."""
    kp = np.array(keypoints, np.float32)
    closure = np.asarray(closure, np.float32)
    if kp.ndim != 3 or kp.shape[1:] != (landmark_space.N_KEYPOINTS, 6):
        raise ValueError(f"keypoints must be [T, 10, 6]; got {tuple(kp.shape)}")
    if closure.shape != kp.shape[:1]:
        raise ValueError(f"closure must be [T] = [{kp.shape[0]}]; got {tuple(closure.shape)}")
    squeeze = 1.0 - np.clip(closure, 0.0, 1.0) * (1.0 - SHUT_HEIGHT)            # [T]
    for k in EYE_KEYPOINTS:
        jac = kp[:, k, 2:].reshape(-1, 2, 2)
        axis = jac[:, :, 0] / np.maximum(np.linalg.norm(jac[:, :, 0], axis=-1, keepdims=True),
                                         1e-9)
        normal = np.stack([-axis[:, 1], axis[:, 0]], -1)                        # [T, 2]
        # (I − (1 − s) n nᵀ) J: the normal component scaled by s, the axis kept
        project = np.eye(2) - (1.0 - squeeze)[:, None, None] * normal[:, :, None] \
            * normal[:, None, :]
        kp[:, k, 2:] = (project @ jac).reshape(-1, 4)
    return kp
