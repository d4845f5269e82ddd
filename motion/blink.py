"""Spontaneous blinks: measured on recorded landmarks, generated for a video, applied to
``landmarks-v1`` keypoints (docs/design.md, "Blinks").

The generator's motion has no blinks (its eye keypoints follow speech, which blinking does not),
so they are added afterwards as an independent process whose rate is bounded by construction:
the first blink starts uniformly within ``[min_first_s, max_first_s]``, the intervals between
blink onsets are a scaled symmetric beta on ``[min_interval_s, max_interval_s]`` (mean their
midpoint), each blink's duration log-normal and clipped. A blink's closure rises over 40 % of
its lid movement and falls over 60 % (lids close faster than they open); its duration is the
time the eye is more than half closed, as ``detect`` measures it on recordings from the eye
aspect ratio (Soukupová and Čech, "Real-time eye blink detection using facial landmarks",
2016). The renderer covers a closing eye with its lid (``render/interior.py``); here a closure
``c`` squeezes each eye keypoint's jacobian along the eye's normal to ``1 − c·(1 − SHUT_HEIGHT)``
of its height.

On every video longer than 10 s ``detect`` finds 8–30 blinks a minute, each 0.1–0.4 s long,
whatever the key: ``rate_bounds`` gives the reasoning and the bounds of a configuration.

The draws do not depend on ``n_frames`` except through truncation: intervals and durations come
in fixed blocks of ``BLOCK`` blinks, block ``k`` drawn with ``fold_in(key, k)``, so the schedule
of a longer video starts with a shorter one's (``motion.stream.BlinkStream`` regrows it).

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
BLOCK = 64                      # blinks drawn per key fold (about 4 min of video)
# per eye: corners, then (upper, lower) lid pairs (dlib's 68-point scheme)
EYES = (((36, 39), ((37, 41), (38, 40))), ((42, 45), ((43, 47), (44, 46))))


@dataclasses.dataclass(frozen=True)
class BlinkConfig:
    """The blink process. Its mean rate, 60 / mean interval = 15 a minute, and its durations are
    the real corpus's (``python -m bench.blink_rate``: 14.9 a minute pooled over clips of
    ≥ 10 s, durations 0.12/0.16/0.20 s; docs/design.md, "Blinks"); its bounds are chosen so
    that every video of more than 10 s gets 8–30 a minute (``rate_bounds``: 8.1–27.3)."""

    # intervals between onsets: a symmetric beta (shape ``regularity``; 1 = uniform) scaled to
    # [min, max], mean their midpoint 4 s. max_interval_s bounds the rate from below (three
    # whole blinks by 14.76 s: first + 2·max + m ≤ 15 s, m = 2·max_duration_s + a frame, the
    # last blink's movement), min_interval_s from above (60 / 2.5 = 24 a minute in a long
    # video, 27.3 at most, just over 11 s) and keeps blinks apart for detect's baseline.
    min_interval_s: float = 2.5
    max_interval_s: float = 5.5
    regularity: float = 2.0          # not measured: the corpus's clips are too short to tell
    # the first onset, uniform: the first frame is the photo as it is, and the first blink
    # comes early enough for a 10 s video to hold two whole ones (first + max + m ≤ 10)
    min_first_s: float = 1.0
    max_first_s: float = 3.0
    duration_s: float = 0.16         # median duration (eye more than half closed)
    duration_spread: float = 0.25    # log-normal σ of the duration
    min_duration_s: float = 0.12     # (detect measures 3 to 10 whole frames at 25 fps:
    max_duration_s: float = 0.36     # 0.12–0.4 s, see rate_bounds)

    def __post_init__(self):
        if not (0 < self.min_first_s <= self.max_first_s
                and 0 < self.min_interval_s <= self.max_interval_s
                and 0 < self.min_duration_s <= self.max_duration_s
                and 2 * self.max_duration_s < self.min_interval_s and self.regularity > 0):
            raise ValueError(f"blink bounds must be ordered and positive, with a blink's lid "
                             f"movement (2·max_duration_s) shorter than min_interval_s; "
                             f"got {self}")


def rate_bounds(config: BlinkConfig, fps: float, min_seconds: float = 10.0
                ) -> tuple[float, float]:
    """The least and greatest blinks a minute ``detect`` finds on a video of more than
    ``min_seconds`` drawn with ``config`` at ``fps``, whatever the key and the length, on an
    eye whose aspect ratio a closure ``c`` lowers by ``k·c``, ``k ≥ 0.45`` (``apply``: 0.95).
    The least counts the blinks wholly inside the video, the greatest also one the video's end
    cuts: a blink still moving the lids on the last frame, which a viewer does not count (its
    end is not shown, and ``detect``'s running median, padded with the last frame, measures it
    shorter than it is).

    With onsets ``t_i`` (``F_lo ≤ t_1 ≤ F_hi``, ``a ≤ t_{i+1} − t_i ≤ b``), each blink moving
    the lids for ``2·d ≤ 2·max_duration_s`` after its onset, and a video of ``L`` seconds:

    - blink ``i`` is whole (its lids at rest again by the last frame, ``(n − 1)/fps``) when
      ``t_i ≤ L − m``, ``m = 2·max_duration_s + 1/fps``; as ``t_i ≤ F_hi + (i − 1)·b``, at least
      ``W(L) = ⌊(L − c)/b⌋ + 1`` blinks are whole, ``c = F_hi + m``. ``60·W/L`` is least just
      before a step, ``L → c + j·b``, and ``60·j/(c + j·b)`` grows with ``j``: the least rate
      over ``L > min_seconds`` is ``60·j₀/(c + j₀·b)``, ``j₀ = W(min_seconds)``. Defaults at
      25 fps: ``c = 3 + 0.76``, ``b = 5.5``, ``j₀ = 2``: 8.13 a minute (as ``L → 14.76 s``).
    - a blink shows at all only if it starts before the end, ``t_i < L``; as ``t_i ≥ F_lo +
      (i − 1)·a``, at most ``⌈(L − F_lo)/a⌉`` are found. The rate is greatest just after a step,
      ``L → F_lo + (j − 1)·a``, or as ``L → min_seconds``: ``60·j/(F_lo + (j − 1)·a)`` falls
      with ``j`` when ``F_lo < a`` and tends to ``60/a``. Defaults (``F_lo = 1``, ``a = 2.5``):
      27.3 a minute, as ``L → 11 s`` with the fifth blink starting on the last frame.

    What ``detect`` needs for this: each blink found, alone, its duration its own. The lids
    move for ``2·d`` ≥ 6 frames at 25 fps, so a frame lies within a sixth of the rise or of
    the fall from the peak and the sampled peak is ≥ smoothstep(5/6) = 0.93 (a dip ≥ 0.4 of
    the eye's ratio for ``k ≥ 0.45``: a blink). The profile is above ½ for ``d`` and above
    0.45 (less than half a sampled peak) for at most ``1.07·d``, so the frames above half the
    peak are 3 to 10 at 25 fps
    (``0.12·25 = 3``, ``1.07·0.36·25 = 9.6``): 0.12–0.4 s. Blinks start ``a`` > 2.04 s apart
    and move the lids for < ``2·max_duration_s`` (18 frames), so fewer than half the frames of
    ``detect``'s 2 s running median move: its baseline is the open eye's and no two blinks
    merge. The tests measure generated blinks with ``detect`` on every length to check it."""
    a, b = config.min_interval_s, config.max_interval_s
    c = config.max_first_s + 2 * config.max_duration_s + 1.0 / fps
    j0 = math.floor((min_seconds - c) / b) + 1
    if j0 < 1:                      # a video just over min_seconds may hold no whole blink
        least = 0.0
    else:
        least = 60.0 * j0 / (c + j0 * b)
    f = config.min_first_s
    j1 = math.floor((min_seconds - f) / a) + 1          # blinks started by min_seconds
    greatest = max(60.0 * j1 / min_seconds, 60.0 * (j1 + 1) / (f + j1 * a), 60.0 / a)
    return least, greatest


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
    half-closed time is ``duration`` (smooth rise, slower smooth fall); numpy, float64."""
    movement = duration / 0.5              # a smoothstep is above ½ for half its span

    def smooth(x):
        x = np.clip(x, 0.0, 1.0)
        return x * x * (3.0 - 2.0 * x)

    rise, fall = CLOSING_SHARE * movement, (1.0 - CLOSING_SHARE) * movement
    return np.where(t < rise, smooth(t / rise), 1.0 - smooth((t - rise) / fall)) \
        * (t >= 0) * (t <= movement)


@jax.jit
def _draw_block(key: jax.Array, index: int, shape: float, lo: float, hi: float, median: float,
                spread: float, shortest: float, longest: float):
    """Block ``index`` of the schedule: intervals ``[BLOCK]`` to the next onset, a symmetric
    beta of ``shape`` scaled to [lo, hi], and durations ``[BLOCK]``, log-normal (``median``,
    σ ``spread``) clipped to [shortest, longest]; drawn with ``fold_in(key, index)``. The
    parameters are traced: one compiled program for every length and configuration."""
    k_gap, k_dur = jax.random.split(jax.random.fold_in(key, index))
    gaps = lo + (hi - lo) * jax.random.beta(k_gap, shape, shape, (BLOCK,))
    durations = jnp.clip(median * jnp.exp(spread * jax.random.normal(k_dur, (BLOCK,))),
                         shortest, longest)
    return gaps, durations


def generate(key: jax.Array, n_frames: int, fps: float,
             config: BlinkConfig = BlinkConfig()) -> np.ndarray:
    """Eye closure ``[n_frames]`` in [0, 1] (1 = shut) of a blink process drawn with ``key``;
    the first ``n`` frames of a longer schedule are the schedule of ``n`` frames."""
    if n_frames < 0 or fps <= 0:
        raise ValueError(f"need n_frames >= 0 and fps > 0; got {n_frames}, {fps}")
    k_first, k_blocks = jax.random.split(key)
    # every blink that starts before the end: onsets ≥ min_first_s, then ≥ min_interval_s apart
    n_blinks = int(math.ceil(n_frames / fps / config.min_interval_s)) + 1
    blocks = [_draw_block(k_blocks, k, config.regularity, config.min_interval_s,
                          config.max_interval_s, config.duration_s, config.duration_spread,
                          config.min_duration_s, config.max_duration_s)
              for k in range(-(-n_blinks // BLOCK))]
    # float32 rounds the bounds: clip again in float64 (rate_bounds reasons on the config's)
    gaps = np.clip(np.concatenate([np.asarray(g, np.float64) for g, _ in blocks]),
                   config.min_interval_s, config.max_interval_s)
    durations = np.clip(np.concatenate([np.asarray(d, np.float64) for _, d in blocks]),
                        config.min_duration_s, config.max_duration_s)
    first = float(np.clip(jax.random.uniform(k_first, (), minval=config.min_first_s,
                                             maxval=config.max_first_s),
                          config.min_first_s, config.max_first_s))
    # a sequential float64 sum: onset i does not depend on how many blocks were drawn
    onsets = first + np.concatenate([[0.0], np.cumsum(gaps[:-1])])
    # each blink touches the frames of its lid movement only (at most 2·max_duration_s)
    span = int(math.ceil(2 * config.max_duration_s * fps)) + 2
    frames = np.ceil(onsets * fps).astype(np.int64)[:, None] + np.arange(span)     # [n, W]
    values = _profile(frames / fps - onsets[:, None], durations[:, None])
    inside = frames < n_frames
    closure = np.zeros(n_frames, np.float64)
    np.maximum.at(closure, frames[inside], values[inside])
    return closure.astype(np.float32)


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
