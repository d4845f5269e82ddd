"""The released model's inference protocol (``execute_model.py``'s ``execute_model``;
docs/design.md, "Released MS-Sync model"): keypoints for a whole recording from one first frame.

From the official features ``[N, 26]`` (``syncers.data.official_audio``, about 100 rows per
second):
- ``R = int(N / 3.9943)`` video frames (3.9943 feature rows per 40 ms frame), and the first
  ``round(3.9943·R)`` rows are used;
- before them, the first ``4·(obs_len − 1)`` rows in reverse order (a mirror that repeats row 0);
  after them 5 rows reflected about the last row (which is not repeated), then everything is cut
  to ``4·R`` rows — from R = 965 frames (38.6 s) on, the 5 rows no longer fill 4·R and the
  model makes fewer frames than R (one fewer at 60 s), as the official code does;
- the warm-up history is x0 (its first ``data_dim`` values) repeated ``obs_len`` times;
- the keypoints are the warm-up's last output before its final one (x0 + the velocity read at
  frame obs_len − 2), then the rollout: R frames in all (under 38.6 s). Frame 0 is therefore
  not x0 itself.

A model with ``data_dim < 6`` moves only the first ``data_dim`` values; the others keep x0's
(the official renderer call cannot take them). The audio streams are computed once per
recording length (the FPN's interpolation depends on it), and the rollout is compiled once per
bucket of steps (32/64/128/256, then multiples of 256, as ``motion.generate.bucket``); steps past
the recording read zero audio and are dropped.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from motion.official.model import OfficialModel
from motion.official.network import audio_streams, stream_scales
from motion.official.rollout import rollout
from syncers.data.layout import KEYPOINT_DIM, N_KEYPOINTS
from syncers.run.errors import InputError

ROWS_PER_FRAME = 3.9943         # execute_model's `inc`
END_PAD = 5                     # rows reflected after the end
_SMALL_BUCKETS = (32, 64, 128, 256)


def steps_bucket(n_steps: int) -> int:
    for size in _SMALL_BUCKETS:
        if n_steps <= size:
            return size
    return -(-n_steps // 256) * 256


def protocol_audio(features_NxF: np.ndarray, obs_len: int) -> np.ndarray:
    """The model's audio input ``[L, 26]`` for a recording's features ``[N, 26]`` (module
    docstring); :class:`InputError` when the recording is too short to generate a frame."""
    features = np.asarray(features_NxF, np.float32)
    frames = int(len(features) / ROWS_PER_FRAME)
    used = features[:int(np.round(frames * ROWS_PER_FRAME))]
    if frames < 2 or len(used) <= END_PAD:
        raise InputError(None, f"the audio gives {len(features)} feature rows; the released "
                               f"model needs at least {int(np.ceil(2 * ROWS_PER_FRAME))}")
    mirror = used[:4 * (obs_len - 1)][::-1]
    tail = np.pad(used, ((0, END_PAD), (0, 0)), mode="reflect")[:4 * frames]
    audio = np.concatenate([mirror, tail])
    if len(audio) // 4 < obs_len + 1:
        raise InputError(None, f"the audio is too short for a warm-up of {obs_len} frames")
    return audio


@functools.partial(jax.jit, static_argnames="config")
def _streams(params, audio_BxLxF, *, config):
    return audio_streams(params, audio_BxLxF, config)


@functools.partial(jax.jit, static_argnames=("n_steps", "config"))
def _rollout(params, inpt, streams, scales, *, n_steps, config):
    return rollout(params, inpt, streams, n_steps, config=config, scales=scales)


def generate_batch(model: OfficialModel, x0_BxKx6, features_BxNxF, head_scale=1.0,
                   lip_scale=1.0) -> np.ndarray:
    """``x0 [B, 10, 6]`` and official features ``[B, N, 26]`` (one length) → keypoints
    ``[B, T, 10, 6]`` by the protocol (module docstring). ``head_scale`` / ``lip_scale``
    multiply the coarse (a^3, a^4) / finest (a^1) streams' merged terms: msync's knobs, 1 = the
    model."""
    config = model.config
    x0 = np.asarray(x0_BxKx6, np.float32)
    features = np.asarray(features_BxNxF, np.float32)
    if x0.ndim != 3 or x0.shape[1:] != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"x0 must be [B, {N_KEYPOINTS}, {KEYPOINT_DIM}]; got {x0.shape}")
    if features.ndim != 3 or features.shape[0] != x0.shape[0] \
            or features.shape[2] != config.audio_features:
        raise ValueError(f"features must be [B={x0.shape[0]}, N, {config.audio_features}]; got "
                         f"{features.shape}")
    audio = np.stack([protocol_audio(f, config.obs_len) for f in features])
    n_steps = audio.shape[1] // 4 - config.obs_len - 1
    padded_steps = steps_bucket(max(n_steps, 1))
    streams = _streams(model.params, jnp.asarray(audio), config=config)
    rows = config.obs_len + 1 + padded_steps
    streams = jnp.pad(streams, ((0, 0), (0, rows - streams.shape[1]), (0, 0), (0, 0)))
    inpt = np.repeat(x0[:, None, :, :config.data_dim], config.obs_len, axis=1)
    warm, outputs = _rollout(model.params, jnp.asarray(inpt), streams,
                             stream_scales(head_scale, lip_scale), n_steps=padded_steps,
                             config=config)
    moved = np.concatenate([np.asarray(warm)[:, -1:], np.asarray(outputs)[:, :1 + n_steps]],
                           axis=1)
    fixed = np.broadcast_to(x0[:, None, :, config.data_dim:],
                            moved.shape[:3] + (KEYPOINT_DIM - config.data_dim,))
    return np.concatenate([moved, fixed], axis=-1)


def generate(model: OfficialModel, x0_Kx6, features_NxF, head_scale=1.0,
             lip_scale=1.0) -> np.ndarray:
    """``x0 [10, 6]``, official features ``[N, 26]`` → keypoints ``[T, 10, 6]``."""
    return generate_batch(model, np.asarray(x0_Kx6)[None], np.asarray(features_NxF)[None],
                          head_scale, lip_scale)[0]
