"""Generation API: a keypoint sequence from a first frame and speech (paper §3.2, inference).

``generate(model, x0 [10, 6], audio_features [4T, 26]) -> [T, 10, 6]``: frame 0 is x0, frames
1..T−1 are rolled out by G. The warm-up history is x0 repeated ``obs_len`` times (frames
−O+1..0), and the audio before t = 0 is the audio after it mirrored (reflect padding about
feature 0); after the end the audio is mirrored too, for the FPN's look-ahead
(``GeneratorConfig.lookahead`` frames), so the last frames see speech-like context.

Lengths are padded up to buckets (:func:`bucket`) so a jitted rollout is compiled once per
bucket, not once per length; frames < T never depend on the padding beyond the mirrored
look-ahead, so the result does not depend on the bucket (tested).

**Long audio in bounded memory.** One scan over the whole length holds every frame's audio
projections and outputs at once, and compiles a program per bucket: memory and compile time
grow with the length. Past ``CHUNK_FRAMES`` frames :func:`generate_batch` rolls out in pieces
of ``CHUNK_FRAMES`` (:func:`_rollout_chunked`), carrying the rollout's state from one to the next
— ``x_t`` and the key/value ring buffers, as ``motion.stream.KeypointStream`` carries them — and
running the FPN on a window of the padded audio around each piece, on the coarsest level's
stride and ``lookback`` frames before it (``GeneratorConfig.lookback``), so it computes what
it computes on the whole clip. The keypoints equal the single scan's to float rounding (tested);
one program is compiled, whatever the length, and the work's memory is that of one piece.

``head_scale`` / ``lip_scale`` multiply the coarse-branch (levels 3–4: head motion at
800/1600 ms) and finest-branch (level 1: lips and jaw at 200 ms) terms of eq. 10 — 1 is the
trained model, 0 removes that motion, > 1 exaggerates it. They are traced values: changing them
does not recompile.

Two corrections for speech unlike the training corpus, both off in :func:`generate` itself and
chosen per model by the pipeline (``motion.talking_head``):

- ``syncers.data.features.match_features`` (``--audio-normalization corpus``, the default when
  the model records ``feature_stats``): per band, every feature value is replaced by the
  training corpus's value at the same rank — quantile matching onto the per-band quantiles
  ``model.json`` records (``motion.saved_model``). Log-mel energies are absolute, so a recording's
  gain and noise floor
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
import time

import jax
import jax.numpy as jnp
import numpy as np

from motion import decode
from motion.generator import (
    KEYPOINT_DIM,
    N_KEYPOINTS,
    Generator,
    GeneratorConfig,
    branch_scales,
)
from motion.model import GeneratorModel, ready
from motion.official import protocol as official_protocol
from motion.official.model import OfficialModel
from motion.rollout import rollout
from syncers.data.layout import FEATURES_PER_FRAME, FPS
from syncers.run import compile_cache
from syncers.run.errors import warn
from syncers.run.progress import bar

_SMALL_BUCKETS = (32, 64, 128, 256)
_LARGE_BUCKET = 256
CHUNK_FRAMES = 1024        # 41 s of video per piece: long audio is rolled out piece by piece


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
    n_rows = audio_Bx4TxF.shape[1]
    mode = pad_mode(n_rows, obs_len, lookahead)
    if mode == "reflect":
        # One array, the ends mirrored from their own rows (an hour's features are 37 MB).
        return _PaddedRows(audio_Bx4TxF, obs_len, lookahead)[0:FEATURES_PER_FRAME * total_frames]
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
    x_obs = np.repeat(x0[:, None], obs, axis=1)
    if n_frames - 1 > CHUNK_FRAMES:
        return _rollout_chunked(model, x_obs, audio, n_frames - 1, head_scale, lip_scale)
    n_gen = bucket(n_frames - 1)
    # the rollout reads the look-ahead past its last frame: give it the mirrored audio there
    audio_in = pad_audio(audio, obs, config.lookahead, obs + n_gen + config.lookahead)
    args = (model.params, model.frame_weights, jnp.asarray(x_obs), jnp.asarray(audio_in),
            jnp.float32(head_scale), jnp.float32(lip_scale))
    rollout_fn = compile_cache.traced_jit(
        functools.partial(_rollout_jit, n_frames=n_gen, config=config), args, "rollout",
        (config, n_gen))
    frames = rollout_fn(*args)
    return np.concatenate([x0[:, None], np.asarray(frames)[:, :n_frames - 1]], axis=1)


@functools.partial(jax.jit, static_argnames=("config",))
def _warm_up(weights, x_obs, config: GeneratorConfig):
    """The rollout's carry after the warm-up on ``x_obs [B, O, 10, 6]``: ``(x_{O−1}, k, v,
    t = O − 1)`` (``motion.rollout``'s scan starts from the same)."""
    k_cache, v_cache, _ = decode.warm_up(weights, x_obs, config)
    return x_obs[:, -1], k_cache, v_cache, jnp.int32(x_obs.shape[1] - 1)


@functools.partial(jax.jit, static_argnames=("config", "n_frames"))
def _rollout_piece(params, weights, carry, window_Bx4WxF, first, scales, anchor, *,
                   config: GeneratorConfig, n_frames: int):
    """The FPN and the branches' audio projections on a window of padded features ``[B, 4W,
    F]``, then ``n_frames`` frames of ``decode_step`` from the window's frame ``first`` on:
    ``(carry, frames [n_frames, B, 10, 6])``."""
    apply = functools.partial(Generator(config).apply, {"params": params})
    a_proj = apply(window_Bx4WxF, method=Generator.audio_projections)     # [B, W, lv, H]
    a_proj = jax.lax.dynamic_slice_in_dim(a_proj, first, n_frames, 1)
    a_proj = jnp.transpose(a_proj, (1, 2, 3, 0))                          # [n, lv, H, B]

    def step(carry, a_proj_t):
        return decode.decode_step(weights, carry, a_proj_t, config=config, scales=scales,
                                  anchor=anchor)
    return jax.lax.scan(step, carry, a_proj)


class _PaddedRows:
    """Rows of :func:`pad_audio`'s array for audio ``[B, 4T, F]`` of a clip longer than its pads
    (``reflect`` mode), without making it: ``self[lo:hi]`` is ``[B, hi − lo, F]``, its mirrored
    ends made once (a few rows each), zeros past them. Padded frame j ↔ rows 4j..4j+3."""

    def __init__(self, audio_Bx4TxF: np.ndarray, obs_len: int, lookahead: int):
        before = FEATURES_PER_FRAME * (obs_len - 1)
        after = FEATURES_PER_FRAME * lookahead
        n_rows = audio_Bx4TxF.shape[1]
        assert pad_mode(n_rows, obs_len, lookahead) == "reflect", n_rows
        self.audio = audio_Bx4TxF
        self.head = np.pad(audio_Bx4TxF[:, :before + 1], ((0, 0), (before, 0), (0, 0)),
                           "reflect")[:, :before]
        self.tail = np.pad(audio_Bx4TxF[:, n_rows - after - 1:], ((0, 0), (0, after), (0, 0)),
                           "reflect")[:, after + 1:]
        self.before, self.n_rows = before, n_rows

    def __getitem__(self, rows: slice) -> np.ndarray:
        lo, hi = rows.start, rows.stop
        batch, _, width = self.audio.shape
        out = np.zeros((batch, hi - lo, width), self.audio.dtype)
        pieces = ((0, self.head), (self.before, self.audio),
                  (self.before + self.n_rows, self.tail))
        for first, piece in pieces:         # each piece's rows inside [lo, hi), copied in
            a, b = max(lo, first), min(hi, first + piece.shape[1])
            if a < b:
                out[:, a - lo:b - lo] = piece[:, a - first:b - first]
        return out


def _rollout_chunked(model: GeneratorModel, x_obs_BxOx10x6: np.ndarray, audio_Bx4TxF: np.ndarray,
                     n_gen: int, head_scale, lip_scale) -> np.ndarray:
    """Frames ``0 .. n_gen`` (``[B, 1 + n_gen, 10, 6]``, frame 0 = x0) with frames 1.. rolled
    out in pieces of ``CHUNK_FRAMES`` (the module docstring), with a progress bar and, after the
    first piece, an estimate of the rest."""
    model = ready(model)                      # the per-frame weights, prepared once
    config = model.config
    obs, lookahead = config.obs_len, config.lookahead
    lookback = config.lookback
    align = 2 ** (config.levels - 1)                      # the coarsest level's stride
    n_pieces = -(-n_gen // CHUNK_FRAMES)
    width = -(-(lookback + lookahead + CHUNK_FRAMES + align - 1) // align) * align
    padded = _PaddedRows(audio_Bx4TxF, obs, lookahead)
    x_obs = jnp.asarray(x_obs_BxOx10x6)
    anchor = x_obs[:, 0]
    carry = _warm_up(model.frame_weights, x_obs, config)
    scales = branch_scales(config.levels, jnp.float32(head_scale), jnp.float32(lip_scale))
    out = np.empty((x_obs.shape[0], 1 + n_pieces * CHUNK_FRAMES) + x_obs.shape[2:], np.float32)
    out[:, 0] = x_obs_BxOx10x6[:, 0]
    progress = bar(n_gen, "generate", "frame")
    started = time.perf_counter()
    for piece in range(n_pieces):
        frame = obs + piece * CHUNK_FRAMES           # padded frame of the piece's first output
        start = max(0, (frame - lookback) // align * align)
        window = padded[FEATURES_PER_FRAME * start:FEATURES_PER_FRAME * (start + width)]
        carry, frames = _rollout_piece(model.params, model.frame_weights, carry,
                                       jnp.asarray(window), jnp.int32(frame - start), scales,
                                       anchor, config=config, n_frames=CHUNK_FRAMES)
        out[:, 1 + piece * CHUNK_FRAMES:1 + (piece + 1) * CHUNK_FRAMES] = \
            np.moveaxis(np.asarray(frames), 0, 1)
        progress.update(min(CHUNK_FRAMES, n_gen - piece * CHUNK_FRAMES))
        if piece == 0 and n_pieces > 2:
            spent = time.perf_counter() - started     # compilation included: an upper bound
            warn(None, f"generating {n_gen + 1} frames ({(n_gen + 1) / FPS / 60:.1f} min of "
                       f"speech) in {n_pieces} pieces; the keypoints will take about "
                       f"{spent * (n_pieces - 1) / 60:.1f} min more")
    progress.close()
    return out[:, :1 + n_gen]


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


def remove_drift(keypoints_Tx10x6: np.ndarray, window_frames: int, causal: bool = False
                 ) -> np.ndarray:
    """``[T, 10, 6]`` → ``[T, 10, 6]``: each value minus the centred moving average (width
    ``window_frames``, made odd) of its deviation from frame 0.

    The deviation is extended past both ends by odd reflection (``2·d[edge] − d[edge ∓ k]``), so
    a linear walk-off is removed right up to the ends, and the first and the last frame are x0
    exactly (the face starts as the source image and comes back to it over the last half
    window). A window under 2 frames returns the input unchanged.

    ``causal`` (a low-latency model's, ``motion.talking_head``): the moving average of the
    same width over the frames up to t only, the deviation zero before frame 0 (the rest pose
    the warm-up repeats) — frame t waits for no later frame. It lags the centred one by half a
    window: a linear walk-off leaves a constant offset of half a window's walk.
    """
    keypoints = np.asarray(keypoints_Tx10x6, np.float32)
    half = int(window_frames) // 2
    if half < 1 or keypoints.shape[0] < 2:
        return keypoints.copy()
    deviation = (keypoints - keypoints[:1]).astype(np.float64)
    if causal:
        padded = np.pad(deviation, ((2 * half, 0), (0, 0), (0, 0)))
    else:
        padded = np.pad(deviation, ((half, half), (0, 0), (0, 0)), mode="reflect",
                        reflect_type="odd")
    sums = np.cumsum(np.concatenate([np.zeros_like(padded[:1]), padded]), axis=0)
    trend = (sums[2 * half + 1:] - sums[:-(2 * half + 1)]) / (2 * half + 1)
    return (keypoints - trend).astype(np.float32)
