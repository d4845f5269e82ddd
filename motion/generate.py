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

(The ``msync generate`` command, ``generate_command``, is added to this module later.)
"""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from motion.generator import KEYPOINT_DIM, N_KEYPOINTS, GeneratorConfig
from motion.rollout import rollout

_SMALL_BUCKETS = (32, 64, 128, 256)
_LARGE_BUCKET = 256


@flax.struct.dataclass
class GeneratorModel:
    """A generator ready to run: its parameters and (static) config."""
    params: Any
    config: GeneratorConfig = flax.struct.field(pytree_node=False)


def bucket(n_frames: int) -> int:
    """Padded rollout length: 32/64/128/256, then multiples of 256 (≤ 2.5 % waste at 60 s)."""
    for size in _SMALL_BUCKETS:
        if n_frames <= size:
            return size
    return -(-n_frames // _LARGE_BUCKET) * _LARGE_BUCKET


@functools.partial(jax.jit, static_argnames=("n_frames", "config"))
def _rollout_jit(params, x_obs, audio, head_scale, lip_scale, *, n_frames, config):
    return rollout(params, x_obs, audio, n_frames, config=config, head_scale=head_scale,
                   lip_scale=lip_scale)


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
    frames = _rollout_jit(model.params, jnp.asarray(x_obs), jnp.asarray(audio_in),
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
