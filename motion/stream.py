"""Streaming generation: speech of unknown length in, frames out as soon as they are determined
(docs/design.md, "Streaming and the web page"; offline: ``motion.generate``).

    streamer = talking_head.streamer(model, source, options)   # motion.talking_head
    for pcm in chunks:                       # any sizes; int16 or float; any sample rate
        frames = streamer.push(pcm, 16000)   # [StreamFrame(index, keypoints [10, 6], image)]
    frames = streamer.close()                # the rest: the end of the audio mirrored

**Exactness.** The streamed keypoints are offline ``motion.generate.generate``'s on the whole
audio's features (``syncers.data.features.audio_features``), equal to float rounding (tested to
1e-5 for every chunk size): the features are the same rows, the FPN sees the same padded
features wherever a frame can see them, and the rollout is the same ``motion.decode.decode_step``
with the same caches, scales and anchor (``restore_seconds``). The look-ahead is the only reason
a frame waits; at :meth:`Streamer.close` the end of the audio is mirrored as ``generate`` mirrors
it (``motion.generate.pad_audio``). Drift removal (``motion.generate.remove_drift``) is exact
too. Corpus matching of the features (``syncers.data.features.match_features``) is not: it ranks
every value among the whole utterance's, which a stream does not have; :class:`RunningMatch` ranks
among the speech heard so far instead (an approximation; on whenever the model records its
corpus statistics, as offline matching is).

**Bounded work.** Every stage keeps a bounded state, so a pushed chunk costs work in proportion
to its length plus a constant, however long the stream has run:

1. :class:`FeatureStream`: the last ≤ 1100 samples; a 100 Hz feature row is computed once the
   400-sample window it reads is complete (``syncers.data.features.framed_features``); rows go
   on in whole 40 ms video frames.
2. :class:`RunningMatch` (optional): a fixed histogram per band.
3. :class:`KeypointStream`: the padded features of the last ~W frames and the rollout's carry
   (x_t and the KV ring buffers of ``motion.decode``). Frame t needs the audio of frames
   t − B .. t + L (``GeneratorConfig.lookback`` / ``lookahead``: B = L = 29 at the paper's
   sizes; B = 53, L = 5 for the low-latency FPN), so the FPN runs on a window of W = B + L + 8
   + 7 (rounded to the coarsest level's stride, 8) frames that starts on that stride, which
   makes it compute exactly what it computes on the whole clip; then ``decode_step`` per
   frame, up to 8 frames per call.
4. The mouth: :class:`LipStream` (the content mouth, ``motion.lips``: a
   ``syncers.data.content.ContentStream`` decoding the samples, the last ``LEVEL_BEFORE +
   before`` frames' energies and ``before`` frames' visemes) or :class:`ArticulationStream`
   (the loudness mouth, ``motion.articulation``), both exact.
5. :class:`DriftStream`: ``remove_drift``'s centred moving average over the last window (or
   its trailing form, for a low-latency model).
6. The renderer (``render.renderer``: the mesh or the warp), one frame per call.

**Latency.** Frame i covers the samples ``[640 i, 640 (i+1))``. It is determined once the samples
up to ``640 (i + 1 + L) + 120`` have arrived: L = the FPN's look-ahead (29 frames at every msync
size: 1.16 s) plus half the drift window (12 frames for the bundled model's 1 s, 0 without), and
120 samples (7.5 ms) for the last feature window's reach past its hop. The content mouth needs
``after + 12`` frames past a frame (its window's reach plus the content stream's look-ahead: 16
for the bundled model) and the loudness of ``2 · after`` frames past it: within L, so it adds no
wait to msync's generators (``Streamer.delay_frames`` says the total). A live source therefore
sees frame i about ``L × 40 ms + 7.5 ms`` after speaking it, plus the compute of one push
(a few ms to tens of ms: ``bench/bench_stream.py``). A low-latency model
(``GeneratorConfig.fpn_lookahead`` = 5, a lip model reading 5 frames ahead, the trailing drift
removal: ``motion.talking_head.load(None, latency="low")``) is streamed the same way, 5 frames
(200 ms) behind.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from motion import articulation, blink, decode, expression, lips
from motion.generate import pad_audio, pad_mode, remove_drift
from motion.generator import KEYPOINT_DIM, N_KEYPOINTS, Generator, GeneratorConfig, branch_scales
from motion.model import GeneratorModel, ready
from motion.official.model import OfficialModel
from motion.source import SourceFace
from render.renderer import Renderer
from syncers.data.content import N_VISEMES, ContentStream
from syncers.data.features import N_FFT, WINDOW, framed_features
from syncers.data.layout import (
    FEATURE_HOP,
    FEATURES_PER_FRAME,
    FPS,
    LANDMARK_SPACE,
    PHANTOM_SPACE,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
)
from syncers.run.errors import InputError

# Feature row m is librosa's centred frame m of the samples after the first half hop
# (``syncers.data.features``): original samples [160 m − 176, 160 m + 336) of which the 400
# under the Hann window, [160 m − 120, 160 m + 280), are its non-zero taps.
_HALF_HOP = FEATURE_HOP // 2                                   # 80
_FRAME_START = N_FFT // 2 - _HALF_HOP                          # 176 samples before 160 m
_TAPS_END = WINDOW // 2 + _HALF_HOP                            # 280 samples after 160 m
_LAST_ROW = FEATURES_PER_FRAME - 1
# Video frame j's last row, 4j + 3, reads samples < 640 j + 760.
_FRAME_REACH = FEATURE_HOP * _LAST_ROW + _TAPS_END             # 760
BLOCK = 8                                 # frames per rollout call (bounds a catch-up's calls)


class FeatureStream:
    """``syncers.data.features.audio_features``, a chunk at a time: :meth:`push` takes 16 kHz mono
    samples ``[n]`` and returns the feature rows ``[4k, 26]`` of the video frames whose rows are
    complete; :meth:`close` returns the rest, the end reflect-padded as offline. The rows
    concatenated are ``audio_features(all samples)`` (tested)."""

    def __init__(self, kind: str = "logmel"):
        if kind not in ("logmel", "mfcc"):
            raise ValueError(f"streaming computes logmel or mfcc features; got {kind!r}")
        self.kind = kind
        self.n_samples = 0              # samples pushed
        self.n_frames = 0               # video frames whose rows went out
        self._start = 0                 # sample index of self._samples[0]
        self._samples = np.zeros(0, np.float32)
        self._closed = False

    @property
    def buffered(self) -> int:
        """Samples held (bounded: about 1100 plus the last chunk)."""
        return int(self._samples.size)

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self._closed:
            raise RuntimeError("push after close")
        samples = np.asarray(samples, np.float32).reshape(-1)
        self._samples = np.concatenate([self._samples, samples])
        self.n_samples += samples.size
        ready = max(0, (self.n_samples - _FRAME_REACH) // SAMPLES_PER_FRAME + 1)
        return self._rows(ready)

    def close(self) -> np.ndarray:
        """The rows of the remaining whole video frames (``floor(n / 640)`` in all)."""
        self._closed = True
        return self._rows(self.n_samples // SAMPLES_PER_FRAME)

    def _rows(self, up_to: int) -> np.ndarray:
        """Rows of video frames ``self.n_frames .. up_to − 1``, then drop what no later row
        reads."""
        if up_to <= self.n_frames:
            return np.zeros((0, 26), np.float32)
        first = FEATURES_PER_FRAME * self.n_frames
        last = FEATURES_PER_FRAME * up_to - 1
        index = np.arange(FEATURE_HOP * first - _FRAME_START,
                          FEATURE_HOP * last + N_FFT - _FRAME_START)
        # librosa's reflect padding of the shifted signal: about sample 80 at the start, and
        # about the last sample at the end (only once the end is known)
        index = np.where(index < _HALF_HOP, 2 * _HALF_HOP - index, index)
        n = self.n_samples
        if self._closed:
            index = np.where(index >= n, 2 * (n - 1) - index, index)
        # Before the end is known, samples past it fall only under the window's zero taps:
        # any value gives the same row, so they are zeros.
        known = index < n
        segment = np.where(known, self._samples[np.clip(index - self._start, 0,
                                                         self._samples.size - 1)], 0.0)
        rows = framed_features(segment.astype(np.float32), self.kind)
        assert rows.shape[0] == last + 1 - first, (rows.shape, first, last)
        self.n_frames = up_to
        # Later rows read samples from 640·up_to − 176 on; the end's reflection, from n − 177.
        keep = max(0, min(SAMPLES_PER_FRAME * up_to - _FRAME_START, n - 200))
        if keep > self._start:
            self._samples = self._samples[keep - self._start:]
            self._start = keep
        return rows


class RunningMatch:
    """``syncers.data.features.match_features`` for a stream (an approximation): each value is
    replaced by the training corpus's quantile at its mid-rank among the values heard so far — the
    whole utterance's ranks are not known until it ends. Ranks are read off a histogram per band
    (``bins`` over ``[low, high]``, about 0.02 wide: far below the features' spread), seeded
    with ``prior_rows`` rows spread as the corpus's own quantiles, so the first rows of a stream
    are mapped about as they are rather than all to the median. ``quantiles [Q, F]``."""

    def __init__(self, quantiles_QxF: np.ndarray, prior_rows: float = 200.0, bins: int = 2048,
                 low: float = -20.0, high: float = 20.0):
        self.quantiles = np.asarray(quantiles_QxF, np.float32)
        self._levels = np.linspace(0.0, 1.0, self.quantiles.shape[0])
        self._low, self._width = low, (high - low) / bins
        self._bins = bins
        n_bands = self.quantiles.shape[1]
        self._counts = np.zeros((n_bands, bins), np.float64)
        weight = prior_rows / self.quantiles.shape[0]
        for band in range(n_bands):
            np.add.at(self._counts[band], self._bin(self.quantiles[:, band]), weight)

    def _bin(self, values: np.ndarray) -> np.ndarray:
        return np.clip(((values - self._low) / self._width).astype(np.int64), 0, self._bins - 1)

    def __call__(self, rows_NxF: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows_NxF, np.float32)
        if rows.shape[0] == 0:
            return rows.copy()
        bins = self._bin(rows)                                          # [N, F]
        for band in range(rows.shape[1]):
            np.add.at(self._counts[band], bins[:, band], 1.0)
        below = np.cumsum(self._counts, axis=1) - self._counts          # [F, bins]
        total = self._counts[0].sum()
        out = np.empty_like(rows)
        for band in range(rows.shape[1]):
            b = bins[:, band]
            rank = (below[band, b] + 0.5 * self._counts[band, b]) / total
            out[:, band] = np.interp(rank, self._levels, self.quantiles[:, band])
        return out


@functools.partial(jax.jit, static_argnames=("config",))
def _warm_up(weights, x_obs, config: GeneratorConfig):
    """The rollout's carry after the warm-up: ``(x_{O−1}, k, v, t = O − 1)``."""
    k_cache, v_cache, _ = decode.warm_up(weights, x_obs, config)
    return x_obs[:, -1], k_cache, v_cache, jnp.int32(x_obs.shape[1] - 1)


def _fpn(module, audio):
    return module.fpn(audio)


def _projections(module, levels):
    return module.head.audio_projections(levels)


@functools.partial(jax.jit, static_argnames=("config", "block"))
def _advance(params, weights, carry, window_1x4WxF, first, count, scales, anchor, *,
             config: GeneratorConfig, block: int):
    """The FPN on a window of padded features ``[1, 4W, F]``, then ``count`` (≤ ``block``)
    frames of ``decode_step`` from the window's frame ``first`` on: ``(carry, [block, 1, 10,
    6])`` (rows past ``count`` are zeros). ``motion.rollout.rollout`` computes the same audio
    projections for the whole clip at once."""
    apply = functools.partial(Generator(config).apply, {"params": params})
    levels = jax.lax.dynamic_slice_in_dim(apply(window_1x4WxF, method=_fpn), first, block, 1)
    a_proj = jnp.transpose(apply(levels, method=_projections), (1, 2, 3, 0))  # [n, lv, H, B]

    def frame(k, state):
        carry, frames = state
        carry, x_next = decode.decode_step(weights, carry, a_proj[k], config=config,
                                           scales=scales, anchor=anchor)
        return carry, frames.at[k].set(x_next)

    frames = jnp.zeros((block,) + anchor.shape, anchor.dtype)
    return jax.lax.fori_loop(0, count, frame, (carry, frames))


class KeypointStream:
    """``motion.generate.generate`` a few frames at a time: :meth:`push` takes feature rows of
    whole video frames ``[4k, F]`` and returns the keypoints ``[n, 10, 6]`` (model space) of the
    frames now determined; :meth:`close` the rest. Frame 0 is x0; frame i ≥ 1 goes out once the
    features of frame i + lookahead are in (see the module docstring)."""

    def __init__(self, model: GeneratorModel, x0_Kx6: np.ndarray, head_scale: float = 1.0,
                 lip_scale: float = 1.0, block: int = BLOCK):
        if isinstance(model, OfficialModel):
            raise InputError(None, "streaming runs msync's own generator; the released MS-Sync "
                                   "model re-encodes 40 frames per frame on its own features — "
                                   "use msync generate for it")
        model = ready(model)
        config = model.config
        x0 = np.asarray(x0_Kx6, np.float32)
        if x0.shape != (N_KEYPOINTS, KEYPOINT_DIM):
            raise ValueError(f"x0 must be [{N_KEYPOINTS}, {KEYPOINT_DIM}]; got {x0.shape}")
        self.config = config
        self.lookahead = config.lookahead
        self._before = config.obs_len - 1                     # mirrored frames before frame 0
        self._lookback = config.lookback
        self._align = 2 ** (config.levels - 1)                # the coarsest level's stride
        self._block = block
        self.window = -(-(self._lookback + self.lookahead + block + self._align - 1)
                        // self._align) * self._align
        self._params = jax.device_put(model.params)
        self._weights = model.frame_weights
        self._x0 = x0
        x_obs = jnp.asarray(np.repeat(x0[None, None], config.obs_len, axis=1))
        self._anchor = x_obs[:, 0]
        self._carry = _warm_up(self._weights, x_obs, config)
        self._scales = branch_scales(config.levels, jnp.float32(head_scale),
                                     jnp.float32(lip_scale))
        self.n_frames = 0                  # video frames whose features came in
        self.n_out = 0                     # frames given out
        self._raw = np.zeros((0, config.audio_features), np.float32)  # until the mode is known
        self._padded = None                # padded feature rows from padded row self._base
        self._base = 0
        self._closed = False

    @property
    def buffered(self) -> int:
        """Feature rows held (bounded: about 4·(W + lookahead) plus the last chunk)."""
        return int((self._raw if self._padded is None else self._padded).shape[0])

    def push(self, rows_4kxF: np.ndarray) -> np.ndarray:
        if self._closed:
            raise RuntimeError("push after close")
        rows = np.asarray(rows_4kxF, np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.config.audio_features \
                or rows.shape[0] % FEATURES_PER_FRAME:
            raise ValueError(f"features must be [4k, {self.config.audio_features}]; got "
                             f"{rows.shape}")
        self.n_frames += rows.shape[0] // FEATURES_PER_FRAME
        if self._padded is None:
            self._raw = np.concatenate([self._raw, rows])
            n_rows = self._raw.shape[0]
            if pad_mode(n_rows, self.config.obs_len, self.lookahead) == "reflect":
                # From here on the clip is long enough that generate reflects its start, and
                # mirroring one end never reads the other: pad the start now.
                self._padded = np.pad(self._raw, ((FEATURES_PER_FRAME * self._before, 0),
                                                  (0, 0)), mode="reflect")
                self._raw = None
        else:
            self._padded = np.concatenate([self._padded, rows])
        up_to = self.n_frames - self.lookahead if self._padded is not None else 0
        return self._frames(max(up_to, min(self.n_frames, 1)))

    def close(self) -> np.ndarray:
        """The remaining frames, the end of the audio mirrored as ``generate`` mirrors it."""
        if self._closed:
            return np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        self._closed = True
        n = self.n_frames
        after = FEATURES_PER_FRAME * self.lookahead
        if n >= 2 and self._padded is None:
            # A clip no longer than a pad: generate's own padding of the whole of it.
            self._padded = pad_audio(self._raw[None], self.config.obs_len, self.lookahead,
                                     self._before + n + self.lookahead)[0]
            self._raw = None
        elif n >= 2:
            tail = self._padded[-(after + 1):]
            self._padded = np.concatenate([self._padded,
                                           np.pad(tail, ((0, after), (0, 0)), "reflect")[-after:]])
        return self._frames(n)

    def _frames(self, up_to: int) -> np.ndarray:
        """Frames ``self.n_out .. up_to − 1``: ``[n, 10, 6]``."""
        out = []
        if self.n_out == 0 and up_to >= 1:
            out.append(self._x0[None])
            self.n_out = 1
        while self.n_out < up_to:
            count = min(self._block, up_to - self.n_out)
            frame = self._before + self.n_out                  # padded frame of the first
            start = self._window_start(frame)
            window = self._rows(FEATURES_PER_FRAME * start,
                                FEATURES_PER_FRAME * (start + self.window))
            self._carry, frames = _advance(
                self._params, self._weights, self._carry, jnp.asarray(window[None]),
                jnp.int32(frame - start), jnp.int32(count), self._scales, self._anchor,
                config=self.config, block=self._block)
            out.append(np.asarray(frames[:count, 0]))
            self.n_out += count
            self._trim()
        if not out:
            return np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        return np.concatenate(out)

    def _window_start(self, frame: int) -> int:
        """The FPN window's first padded frame for ``frame``: ``lookback`` frames before it or
        more, on the coarsest level's stride (so every level's grid is the whole clip's)."""
        return max(0, (frame - self._lookback) // self._align * self._align)

    def _rows(self, start: int, stop: int) -> np.ndarray:
        """Padded rows ``start .. stop − 1``; zeros past those held (no frame given out reads
        them: they lie beyond its look-ahead)."""
        assert start >= self._base, (start, self._base)
        held = self._padded[start - self._base:stop - self._base]
        if held.shape[0] < stop - start:
            held = np.concatenate([held, np.zeros((stop - start - held.shape[0],
                                                   held.shape[1]), np.float32)])
        return held

    def _trim(self) -> None:
        """Drop rows no later window reads, keeping the last lookahead + 1 frames' rows for the
        end's reflection."""
        start = FEATURES_PER_FRAME * self._window_start(self._before + self.n_out)
        end = self._base + self._padded.shape[0]
        keep = max(self._base, min(start, end - FEATURES_PER_FRAME * (self.lookahead + 1)))
        if keep > self._base:
            self._padded = self._padded[keep - self._base:]
            self._base = keep


class DriftStream:
    """``motion.generate.remove_drift`` for a stream: frame t goes out once frame t + half is in
    (``half = window_frames // 2``), or at once with ``causal`` (the trailing average of a
    low-latency model); the same values as offline (tested). ``[n, 10, 6]`` in and out."""

    def __init__(self, window_frames: int, causal: bool = False):
        self.half = int(window_frames) // 2
        self.causal = causal
        # the trailing window's last 2·half deviations (zero before frame 0, as offline)
        self._tail = np.zeros((2 * self.half, N_KEYPOINTS, KEYPOINT_DIM), np.float64)
        self.n_in = 0
        self.n_out = 0
        self._base = 0                                # frame index of self._held[0]
        self._held = np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        self._first = None                            # frame 0 (the deviations' origin)
        self._closed = False

    @property
    def buffered(self) -> int:
        return int(self._held.shape[0] + (self._tail.shape[0] if self.causal else 0))

    @property
    def delay(self) -> int:
        """Frames after frame t that frame t waits for."""
        return 0 if self.causal else self.half

    def push(self, keypoints: np.ndarray) -> np.ndarray:
        keypoints = np.asarray(keypoints, np.float32)
        if self.half < 1:
            self.n_in += keypoints.shape[0]
            self.n_out = self.n_in
            return keypoints.copy()
        if keypoints.shape[0] and self._first is None:
            self._first = keypoints[0].astype(np.float64)
        if self.causal:
            return self._trailing(keypoints)
        self._held = np.concatenate([self._held, keypoints])
        self.n_in += keypoints.shape[0]
        return self._emit(self.n_in - self.half)

    def _trailing(self, keypoints: np.ndarray) -> np.ndarray:
        """The causal form: each frame minus the mean deviation of the 2·half + 1 frames up
        to it."""
        self.n_in += keypoints.shape[0]
        self.n_out = self.n_in
        if keypoints.shape[0] == 0:
            return keypoints.copy()
        width = 2 * self.half + 1
        dev = np.concatenate([self._tail, keypoints.astype(np.float64) - self._first])
        sums = np.cumsum(np.concatenate([np.zeros_like(dev[:1]), dev]), axis=0)
        trend = (sums[width:] - sums[:-width]) / width
        self._tail = dev[-(width - 1):]
        return (keypoints - trend).astype(np.float32)

    def close(self) -> np.ndarray:
        self._closed = True
        if self.half < 1 or self.causal:
            return np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        if self.n_in <= self.half:
            # Shorter than the half window: nothing went out yet and numpy's reflection
            # repeats; the offline function on all of it.
            assert self.n_out == 0 and self._base == 0
            out = remove_drift(self._held, 2 * self.half + 1)
            self.n_out = self.n_in
            return out
        return self._emit(self.n_in)

    def _deviation(self, frames: np.ndarray) -> np.ndarray:
        """The deviation from frame 0 at frame indices ``frames``, extended past both ends by
        odd reflection as ``remove_drift`` does (past the end only once it is known)."""
        last = self.n_in - 1
        low = frames < 0
        high = frames > last
        index = np.where(low, -frames, np.where(high, 2 * last - frames, frames))
        dev = self._held[index - self._base].astype(np.float64) - self._first
        if np.any(high):
            dev_last = self._held[last - self._base].astype(np.float64) - self._first
            dev = np.where(high[:, None, None], 2 * dev_last - dev, dev)
        # 2·d[0] − d[k] = −d[k] before the start (d[0] = 0)
        return np.where(low[:, None, None], -dev, dev)

    def _emit(self, up_to: int) -> np.ndarray:
        if up_to <= self.n_out or (not self._closed and self.n_in <= self.half):
            return np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        first, width = self.n_out, 2 * self.half + 1
        dev = self._deviation(np.arange(first - self.half, up_to + self.half))
        sums = np.cumsum(np.concatenate([np.zeros_like(dev[:1]), dev]), axis=0)
        trend = (sums[width:] - sums[:-width]) / width                 # [up_to − first, ...]
        out = (self._held[first - self._base:up_to - self._base] - trend).astype(np.float32)
        self.n_out = up_to
        # Later frames read back to n_out − half, and frames 1..half for the start's mirror.
        keep = max(0, self.n_out - self.half)
        if keep > self._base:
            self._held = self._held[keep - self._base:]
            self._base = keep
        return out


@dataclasses.dataclass(frozen=True)
class StreamFrame:
    """One output frame: ``index`` (frame i covers audio ``[40 i, 40 (i+1))`` ms),
    ``keypoints [10, 6]`` in the model's space (``generate``'s, after drift removal),
    ``image [S, S, 3]`` uint8 RGB (None without a renderer)."""

    index: int
    keypoints: np.ndarray
    image: np.ndarray | None


class Streamer:
    """Image + speech pushed in chunks → frames as they are determined (module docstring).

    ``model``: a ``GeneratorModel`` whose keypoints live in ``keypoint_space`` (``landmarks-v1``
    or ``phantom-v1``); ``source``: the photo prepared for it (``motion.source.prepare_source``,
    as offline generation prepares it); ``renderer``: a ``render.renderer.Renderer`` of that
    source (one frame per call: ``chunk=1``), or None for keypoints only. ``head_scale`` /
    ``lip_scale`` as in ``generate``; ``drift_window_s``: ``remove_drift``'s window (0 = off);
    ``articulation_map``: the model's speech-driven mouth (``motion.saved_model.
    model_articulation``; None = none), scaled by ``lip_scale``; ``lip_model``: the content
    mouth in its place (``motion.saved_model.model_lips``; at most one of the two);
    ``quantiles [Q, F]``: match the features to a corpus with :class:`RunningMatch` (None = as
    they are); ``blink_key``: add the blinks ``motion.blink.generate`` draws with it to the
    drawn frames (None = none; the same schedule as offline generation's, :class:`BlinkStream`);
    ``causal_drift``: drift removal's trailing form (``remove_drift(causal=True)``, a
    low-latency model's: no wait for later frames); ``expression_space``: keep each generated
    frame's non-rigid motion within it (``motion.expression.project``, frame by frame, as
    offline; None = as generated).
    ``motion.talking_head.streamer`` builds one from a loaded model and generation options.
    """

    def __init__(self, model: GeneratorModel, source: SourceFace, renderer: Renderer | None,
                 *, keypoint_space: str = PHANTOM_SPACE, head_scale: float = 1.0,
                 lip_scale: float = 1.0, drift_window_s: float = 0.0,
                 quantiles: np.ndarray | None = None, feature_kind: str = "logmel",
                 block: int = BLOCK, articulation_map: articulation.Articulation | None = None,
                 lip_model: lips.LipModel | None = None, blink_key: jax.Array | None = None,
                 causal_drift: bool = False,
                 expression_space: expression.ExpressionSpace | None = None):
        if keypoint_space not in (LANDMARK_SPACE, PHANTOM_SPACE):
            raise InputError(None, f"streaming draws {LANDMARK_SPACE} and {PHANTOM_SPACE} "
                                   f"models with the weight-free renderers; this model moves "
                                   f"{keypoint_space} keypoints")
        for name, mouth in (("articulation", articulation_map), ("lip model", lip_model),
                            ("expression space", expression_space)):
            if mouth is not None and keypoint_space != LANDMARK_SPACE:
                raise InputError(None, f"the {name} moves {LANDMARK_SPACE} mouths; this "
                                       f"model moves {keypoint_space} keypoints")
        if articulation_map is not None and lip_model is not None:
            raise ValueError("a stream adds one mouth: the articulation or the lip model")
        self.source = source
        self.crop = source.crop
        self.to_image = source.to_image
        self.x0 = source.x0                        # [10, 6], the model's space
        self.renderer = renderer
        self.size = source.size
        self.features = FeatureStream(feature_kind)
        self.match = None if quantiles is None else RunningMatch(quantiles)
        self.keypoints = KeypointStream(model, self.x0, head_scale, lip_scale, block)
        self.expression = expression_space
        self.articulation = None if articulation_map is None else \
            ArticulationStream(articulation_map, lip_scale)
        self.lips = None if lip_model is None else LipStream(lip_model, lip_scale)
        self.drift = DriftStream(round(drift_window_s * FPS), causal_drift)
        self.blinks = None if blink_key is None else BlinkStream(blink_key)
        self.delay_frames = max(self.keypoints.lookahead,
                                0 if self.lips is None else self.lips.lookahead) \
            + self.drift.delay
        self._resampler = None
        self._rate = None
        self._n_out = 0
        self._closed = False

    def compile(self) -> None:
        """Compile the rollout and the renderer now (a few seconds), so that the first frames of
        a live stream do not wait for it; changes no state."""
        FeatureStream(self.features.kind).push(np.zeros(2 * SAMPLES_PER_FRAME, np.float32))
        keypoints = self.keypoints
        window = np.zeros((1, FEATURES_PER_FRAME * keypoints.window,
                           keypoints.config.audio_features), np.float32)
        jax.block_until_ready(_advance(
            keypoints._params, keypoints._weights, keypoints._carry, jnp.asarray(window),
            jnp.int32(0), jnp.int32(1), keypoints._scales, keypoints._anchor,
            config=keypoints.config, block=keypoints._block))
        if self.renderer is not None:
            n_out = self._n_out
            self._render(self.x0[None])
            self._n_out = n_out

    @property
    def samples_in(self) -> int:
        """16 kHz samples pushed so far."""
        return self.features.n_samples

    def buffered(self) -> dict[str, int]:
        """What each stage holds (bounded whatever the stream's length; tests check it)."""
        return {"samples": self.features.buffered, "feature_rows": self.keypoints.buffered,
                "articulation_frames": 0 if self.articulation is None
                else self.articulation.buffered,
                "lip_frames": 0 if self.lips is None else self.lips.buffered,
                "drift_frames": self.drift.buffered}

    def push(self, pcm: np.ndarray, sample_rate: int = SAMPLE_RATE) -> list[StreamFrame]:
        """Audio ``[n]`` or ``[n, channels]`` (int16, or float in [-1, 1]) → the frames now
        determined (often none: a frame waits for its look-ahead)."""
        if self._closed:
            raise RuntimeError("push after close")
        samples = self._samples(pcm, sample_rate, last=False)
        if self.lips is not None:
            self.lips.push_samples(samples)
        return self._frames(self.features.push(samples))

    def close(self) -> list[StreamFrame]:
        """The remaining frames (the end of the audio mirrored): ``floor(n / 640)`` in all."""
        if self._closed:
            return []
        self._closed = True
        samples = self._samples(np.zeros(0, np.float32), self._rate, last=True)
        if self.lips is not None:
            self.lips.push_samples(samples)
        frames = self._frames(self.features.push(samples))
        rows = self.features.close()
        if self.lips is not None:
            self.lips.push_rows(rows)
        if self.match is not None:
            rows = self.match(rows)
        kp = self.keypoints.push(rows)
        kp = np.concatenate([kp, self.keypoints.close()])
        if self.expression is not None:
            kp = expression.project(self.expression, kp, self.x0)
        if self.articulation is not None:
            self.articulation.push_rows(rows)
            kp = np.concatenate([self.articulation.push(kp), self.articulation.close()])
        if self.lips is not None:
            kp = np.concatenate([self.lips.push(kp), self.lips.close()])
        kp = np.concatenate([self.drift.push(kp), self.drift.close()])
        return frames + self._render(kp)

    def _samples(self, pcm, sample_rate, last: bool) -> np.ndarray:
        pcm = np.asarray(pcm)
        if pcm.ndim == 2:
            pcm = pcm.astype(np.float32).mean(axis=1) if pcm.dtype != np.int16 else \
                pcm.astype(np.float32).mean(axis=1) / 32768.0
        elif pcm.dtype == np.int16:
            pcm = pcm.astype(np.float32) / 32768.0
        if pcm.ndim != 1:
            raise ValueError(f"pcm must be [n] or [n, channels]; got {pcm.shape}")
        samples = pcm.astype(np.float32)
        if not np.all(np.isfinite(samples)):
            raise ValueError("the audio contains NaN or infinite samples")
        if sample_rate is None or sample_rate == SAMPLE_RATE:
            self._rate = self._rate or SAMPLE_RATE
            if self._rate != SAMPLE_RATE:
                raise ValueError("the sample rate changed within the stream")
            return samples
        if self._rate is None:
            import soxr  # librosa's resampler, a dependency of it; only non-16 kHz streams need it
            self._resampler = soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32",
                                                  quality="HQ")
            self._rate = sample_rate
        elif self._rate != sample_rate:
            raise ValueError("the sample rate changed within the stream")
        return self._resampler.resample_chunk(samples, last=last)

    def _frames(self, rows: np.ndarray) -> list[StreamFrame]:
        if self.lips is not None:
            self.lips.push_rows(rows)          # the prosody reads the speech's own loudness
        if self.match is not None:
            rows = self.match(rows)
        keypoints = self.keypoints.push(rows)
        if self.expression is not None:
            keypoints = expression.project(self.expression, keypoints, self.x0)
        if self.articulation is not None:
            self.articulation.push_rows(rows)
            keypoints = self.articulation.push(keypoints)
        if self.lips is not None:
            keypoints = self.lips.push(keypoints)

        return self._render(self.drift.push(keypoints))

    def _render(self, keypoints_Nx10x6: np.ndarray) -> list[StreamFrame]:
        if keypoints_Nx10x6.shape[0] == 0:
            return []
        if not np.all(np.isfinite(keypoints_Nx10x6)):
            raise FloatingPointError("the generator produced NaN or infinite keypoints")
        driving = self.to_image(keypoints_Nx10x6)
        if self.blinks is not None:
            driving = blink.apply(driving, self.blinks(self._n_out, len(driving)))
        chunks = [None] * driving.shape[0] if self.renderer is None else \
            self.renderer.chunks(driving)
        out = []
        for kp, chunk in zip(keypoints_Nx10x6, chunks):
            image = None if chunk is None else \
                (np.clip(chunk[0], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            out.append(StreamFrame(self._n_out, kp, image))
            self._n_out += 1
        return out


class BlinkStream:
    """The eye closure of frames ``start .. start + n`` of the blink schedule drawn with a key
    (``motion.blink.generate``), whose first frames do not depend on how many are drawn: the
    schedule is drawn again for twice the frames whenever a frame passes its end, so the
    work per frame stays bounded on average and the frames equal offline generation's."""

    def __init__(self, key: jax.Array, horizon: int = 60 * FPS):
        self.key = key
        self.horizon = horizon
        self.closure = np.zeros(0, np.float32)

    def __call__(self, start: int, n_frames: int) -> np.ndarray:
        if start + n_frames > len(self.closure):
            self.horizon = max(2 * self.horizon, start + n_frames)
            self.closure = blink.generate(self.key, self.horizon, FPS)
        return self.closure[start:start + n_frames]


class _MouthStream:
    """What the two stream mouths share: generated keypoints wait until their frame's window of
    speech is known, then leave with the mouth's offsets applied (``articulation.apply``,
    relative to the first keypoints, x0)."""

    def __init__(self, lip_scale: float):
        self.lip_scale = float(lip_scale)
        self._waiting = np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        self._reference = None                # the first keypoints (x0): the mouth's own shape
        self.n_out = 0
        self._closed = False

    def _wait(self, keypoints_Nx10x6: np.ndarray) -> None:
        self._waiting = np.concatenate([self._waiting, np.asarray(keypoints_Nx10x6, np.float32)])
        if self._reference is None and len(self._waiting):
            self._reference = self._waiting[0].copy()

    def _release(self, offsets_Nx20x2: np.ndarray) -> np.ndarray:
        """The first ``N`` waiting keypoints with the mouth's ``offsets [N, 20, 2]``."""
        count = len(offsets_Nx20x2)
        out = articulation.apply(self._waiting[:count], offsets_Nx20x2, self.lip_scale,
                                 self._reference)
        self._waiting = self._waiting[count:]
        self.n_out += count
        return out


def _drop_before(buffer: np.ndarray, base: int, keep: int) -> tuple[np.ndarray, int]:
    """``(buffer, base)`` without the frames before ``keep`` (``base``: buffer[0]'s frame)."""
    return (buffer[keep - base:], keep) if keep > base else (buffer, base)


class ArticulationStream(_MouthStream):
    """``motion.articulation`` for a stream: frame t's mouth is set once the feature rows of
    frame t + ``after`` are in (always true when its keypoints come out of
    :class:`KeypointStream`, whose look-ahead is longer), the first and the last frame's rows
    repeated past the ends as ``articulation.audio_windows`` does: the same values as offline
    (tested). Rows ``[n, F]`` and keypoints ``[n, 10, 6]`` in, keypoints out. Holds the rows of
    the last ``before + after + 1`` frames, the keypoints that wait for their rows and the first
    keypoints (x0: the mouth whose lopsided change ``articulation.apply`` takes out)."""

    def __init__(self, fitted: articulation.Articulation, lip_scale: float = 1.0):
        super().__init__(lip_scale)
        self.fitted = fitted
        self._rows = np.zeros((0, 1), np.float32)          # loudness rows, not yet a whole frame
        self._frames = np.zeros((0, FEATURES_PER_FRAME), np.float32)
        self._base = 0                        # frame index of self._frames[0]

    @property
    def buffered(self) -> int:
        return int(self._frames.shape[0] + self._waiting.shape[0])

    @property
    def _n_row_frames(self) -> int:
        return self._base + self._frames.shape[0]

    def push_rows(self, rows_NxF: np.ndarray) -> None:
        rows = np.concatenate([self._rows, articulation.loudness(rows_NxF)])
        whole = rows.shape[0] // FEATURES_PER_FRAME * FEATURES_PER_FRAME
        self._frames = np.concatenate(
            [self._frames, rows[:whole].reshape(-1, self._frames.shape[1])])
        self._rows = rows[whole:]

    def push(self, keypoints_Nx10x6: np.ndarray) -> np.ndarray:
        self._wait(keypoints_Nx10x6)
        return self._emit(self._n_row_frames - self.fitted.after)

    def close(self) -> np.ndarray:
        self._closed = True
        return self._emit(self.n_out + self._waiting.shape[0])

    def _emit(self, up_to: int) -> np.ndarray:
        count = min(up_to - self.n_out, self._waiting.shape[0])
        if count <= 0 or self._n_row_frames == 0:
            return np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        fitted = self.fitted
        frames = np.arange(self.n_out, self.n_out + count)
        offsets = np.arange(-fitted.before, fitted.after + 1)
        index = np.clip(frames[:, None] + offsets, 0, self._n_row_frames - 1) - self._base
        out = self._release(
            articulation.predict_windows(fitted, self._frames[index].reshape(count, -1)))
        self._frames, self._base = _drop_before(self._frames, self._base,
                                                max(0, self.n_out - fitted.before))
        return out


class LipStream(_MouthStream):
    """``motion.lips`` for a stream (the content mouth): the samples go to a
    ``ContentStream`` (``syncers.data.content``, with the model's ``content_lookahead``, as
    offline generation decodes), the
    unmatched feature rows to per-frame log energies (``motion.lips.log_energy``), the
    generated keypoints wait until the window of their frame is known: the visemes of frames
    up to t + ``after`` and the energies up to t + 2·``after`` (frame t + ``after``'s prosody
    reads ``after`` frames past it). The first and last frames are repeated past the ends and
    each prosody's level reads the frames there are, as ``motion.lips.predict`` does: the same
    values as offline (tested). Holds the last ``before`` frames' visemes, the last
    ``LEVEL_BEFORE + before`` frames' energies, the keypoints that wait and the first keypoints
    (x0, the reference of ``articulation.apply``)."""

    def __init__(self, fitted: lips.LipModel, lip_scale: float = 1.0):
        super().__init__(lip_scale)
        self.fitted = fitted
        self.reads_content = fitted.reads_content
        self.reads_prosody = fitted.reads_prosody
        # the look-ahead the model was fitted with, which offline generation decodes with too
        self.content = ContentStream(fitted.content_lookahead) if self.reads_content else None
        self.lookahead = fitted.lookahead
        self._visemes = np.zeros((0, N_VISEMES), np.float32)
        self._visemes_base = 0                # frame index of self._visemes[0]
        self._rows = None                     # feature rows short of a whole frame
        self._energy = np.zeros(0, np.float64)
        self._energy_base = 0

    @property
    def buffered(self) -> int:
        return int(self._visemes.shape[0] + self._energy.shape[0] + self._waiting.shape[0])

    def push_samples(self, samples: np.ndarray) -> None:
        if self.content is not None:
            self._visemes = np.concatenate([self._visemes, self.content.push(samples)])

    def push_rows(self, rows_NxF: np.ndarray) -> None:
        if not self.reads_prosody:
            return
        rows = np.asarray(rows_NxF, np.float32)
        rows = rows if self._rows is None else np.concatenate([self._rows, rows])
        whole = rows.shape[0] // FEATURES_PER_FRAME * FEATURES_PER_FRAME
        if whole:
            self._energy = np.concatenate([self._energy, lips.log_energy(rows[:whole])])
        self._rows = rows[whole:]

    def push(self, keypoints_Nx10x6: np.ndarray) -> np.ndarray:
        self._wait(keypoints_Nx10x6)
        if self._closed:
            return self._emit(self.n_out + self._waiting.shape[0])
        after = self.fitted.after
        limits = [self.n_out + self._waiting.shape[0]]
        if self.reads_content:
            limits.append(self._n_visemes - after)
        if self.reads_prosody:
            limits.append(self._n_energy - 2 * after)
        return self._emit(min(limits))

    def close(self) -> np.ndarray:
        """The waiting keypoints, once all the samples and rows are in."""
        if not self._closed and self.content is not None:
            self._visemes = np.concatenate([self._visemes, self.content.close()])
        self._closed = True
        return self._emit(self.n_out + self._waiting.shape[0])

    @property
    def _n_visemes(self) -> int:
        return self._visemes_base + self._visemes.shape[0]

    @property
    def _n_energy(self) -> int:
        return self._energy_base + self._energy.shape[0]

    def _emit(self, up_to: int) -> np.ndarray:
        count = min(up_to - self.n_out, self._waiting.shape[0])
        if count <= 0:
            return np.zeros((0, N_KEYPOINTS, KEYPOINT_DIM), np.float32)
        fitted = self.fitted
        # the clip's frames as offline counts them: the content's, else the energies'
        n_frames = self._n_visemes if self.reads_content else self._n_energy
        last = n_frames - 1 if self._closed else np.iinfo(np.int64).max
        first_u = max(0, self.n_out - fitted.before)
        last_u = min(last, self.n_out + count - 1 + fitted.after)
        frames = np.arange(first_u, last_u + 1)
        channels = []
        if self.reads_content:
            channels.append(self._visemes[frames - self._visemes_base])
        if self.reads_prosody:
            channels.append(self._prosody(frames))
        channels = np.concatenate(channels, axis=1)
        index = np.clip(np.arange(self.n_out, self.n_out + count)[:, None]
                        + np.arange(-fitted.before, fitted.after + 1), 0, last) - first_u
        windows = channels[index].reshape(count, -1)
        out = self._release((lips.coefficients(fitted, windows) @ fitted.components).reshape(
            count, -1, 2))
        keep = max(0, self.n_out - fitted.before)
        self._visemes, self._visemes_base = _drop_before(self._visemes, self._visemes_base, keep)
        self._energy, self._energy_base = _drop_before(self._energy, self._energy_base,
                                                       max(0, keep - lips.LEVEL_BEFORE))
        return out

    def _prosody(self, frames_U: np.ndarray) -> np.ndarray:
        """``[U, 1]``: ``motion.lips.prosody`` of these frames from the energies held."""
        after = self.fitted.after
        energy, base, end = self._energy, self._energy_base, self._n_energy
        level = np.array([energy[max(0, u - lips.LEVEL_BEFORE) - base:
                                 min(end, u + after + 1) - base].max() for u in frames_U])
        return np.maximum(energy[frames_U - base] - level, lips.PROSODY_FLOOR)[:, None] \
            .astype(np.float32)
