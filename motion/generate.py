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
chosen per model by the pipeline (``motion.talking_head``):

- ``syncers.data.features.match_features`` (``--audio-normalization corpus``, the default when
  the model records ``feature_stats``): per band, every feature value is replaced by the
  training corpus's value at the same rank — quantile matching onto the per-band quantiles
  ``model.json`` records (``motion.saved_model``). Log-mel energies are absolute, so a recording's gain and noise floor
  move all of them; the phantom corpus's pauses are digital silence at the log floor. Matching
  ranks rather than mean/std keeps that two-mode (pause/speech) shape.
- :func:`remove_drift` (``--drift-window S``; default the model's ``drift_window_s``, 0 = off):
  each keypoint value's deviation from x0 minus its centred moving average over S seconds — a
  high-pass that keeps lip motion (syllables, 3–6 Hz) and removes the slow walk-off of a rollout
  whose velocities are biased. The bundled demo model needs it (1 s): on its own phantom test
  clips its mouth opening grows from 0.06 to 0.6 in 8 s (ground truth stays within 0.04–0.10),
  and on real speech the warp then swirls the face. It also removes the slowest head motion
  (below about 0.5 Hz), so a model that does not drift should not record it.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from motion.generator import KEYPOINT_DIM, N_KEYPOINTS
from motion.model import GeneratorModel
from motion.official import protocol as official_protocol
from motion.official.model import OfficialModel
from motion.rollout import rollout
from syncers.data.layout import FEATURES_PER_FRAME

_SMALL_BUCKETS = (32, 64, 128, 256)
_LARGE_BUCKET = 256


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


def pad_mode(n_features: int, obs_len: int, lookahead: int) -> str:
    """How :func:`pad_audio` mirrors ``n_features`` feature frames (``np.pad``'s mode): reflect
    about the first and the last frame, or, for a clip no longer than a pad (reflect needs
    more frames than it pads), symmetric repetition."""
    before = FEATURES_PER_FRAME * (obs_len - 1)
    after = FEATURES_PER_FRAME * lookahead
    return "reflect" if n_features > max(before, after) else "symmetric"


def pad_audio(audio_Bx4TxF: np.ndarray, obs_len: int, lookahead: int, total_frames: int
              ) -> np.ndarray:
    """Mirror ``obs_len − 1`` frames before t=0 and ``lookahead`` after the end, then zeros up to
    ``total_frames`` (≥ what the rollout needs): ``[B, 4T, F]`` → ``[B, 4·total_frames, F]``
    (:func:`pad_mode`; ``motion.stream`` mirrors the same way, one end at a time)."""
    before = FEATURES_PER_FRAME * (obs_len - 1)
    after = FEATURES_PER_FRAME * lookahead
    mode = pad_mode(audio_Bx4TxF.shape[1], obs_len, lookahead)
    padded = np.pad(audio_Bx4TxF, ((0, 0), (before, after), (0, 0)), mode=mode)
    extra = FEATURES_PER_FRAME * total_frames - padded.shape[1]
    if extra > 0:
        padded = np.pad(padded, ((0, 0), (0, extra), (0, 0)))
    return padded[:, :FEATURES_PER_FRAME * total_frames]


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
    n_frames = audio.shape[1] // FEATURES_PER_FRAME
    if n_frames < 1 or audio.shape[1] % FEATURES_PER_FRAME:
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


def generate(model: GeneratorModel | OfficialModel, x0_Kx6, audio_features_4TxF, head_scale=1.0,
             lip_scale=1.0) -> np.ndarray:
    """``x0 [10, 6]``, ``audio_features [4T, F]`` → keypoints ``[T, 10, 6]`` (frame 0 = x0).

    A released MS-Sync model (``motion.official``) takes its own features ``[N, 26]`` and runs
    its own inference protocol (``motion.official.protocol``: T ≈ N / 3.9943, frame 0 ≠ x0)."""
    if isinstance(model, OfficialModel):
        return official_protocol.generate(model, x0_Kx6, audio_features_4TxF, head_scale,
                                          lip_scale)
    x0 = np.asarray(x0_Kx6, np.float32)
    audio = np.asarray(audio_features_4TxF, np.float32)
    if x0.shape != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"x0 must be [{N_KEYPOINTS}, {KEYPOINT_DIM}]; got {x0.shape}")
    if audio.ndim != 2:
        raise ValueError(f"audio_features must be [4T, F]; got {audio.shape}")
    return generate_batch(model, x0[None], audio[None], head_scale, lip_scale)[0]


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
