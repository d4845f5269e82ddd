"""Audio FPN, bottom-up path (MS-Sync §3.2, the multi-scale module's audio features a^i).

Audio features ``[B, 4A, F]`` (100 Hz, 4 per video frame) become four levels aligned with the
syncer pyramid (``syncers.data.pyramid``, paper eq. 5):

- level 1 (25 Hz): a stride-4, kernel-4 convolution reads exactly the four features of video
  frame j (features 4j..4j+3), then ``post_convs`` kernel-3 convolutions;
- levels 2–4 (12.5, 6.25, 3.125 Hz): a kernel-3, stride-2 convolution centred like the pyramid's
  stride-2 step (level-i+1 frame n is centred on level-i frame 2n), then ``post_convs``
  kernel-3 convolutions;
- every level is layer-normalised and levels 2–4 are linearly interpolated back to the A frames
  of level 1, so frame t of every level is centred on video frame t.

Look-ahead (the receptive field into the future, in video frames) is what makes frame t depend
on audio after t. A centred kernel-3 convolution at level i (stride s_i = 2**(i-1) video frames)
reaches s_i frames ahead, and so does the stride-2 convolution entering level i+1; linear
interpolation at level i > 1 reaches the next coarse frame, at most s_i − 1 frames ahead.
:func:`lookahead_frames` adds these up; with one post convolution per level it is 1, 5, 13 and
29 frames for levels 1–4 (29 frames = 1.16 s, the level-4 syncer's segment spans ±0.8 s), so
**generated frame t depends on audio of frames ≤ t + 29 and never on later audio** (tested).
The reach into the past is the same (:func:`lookback_frames`): frame t reads frames t − 29 ..
t + 29, so a stream can run the FPN on a bounded window (``motion.stream``).
Zero padding is used at both ends; callers wanting real context at the edges pass it
(``motion.generate`` mirror-pads).

**Low latency** (``lookahead`` = L, ``GeneratorConfig.fpn_lookahead``; a departure from the
paper): a level whose centred reach R_i exceeds L is *delayed* by D_i = R_i − L frames — frame
t of level i is the centred level's value at t − D_i (the interpolation reads the coarse frames
around t − D_i; level 1, on the video grid, is shifted by whole frames; before the level's
first frame it is zero) — so frame t reads no audio after t + L. The delay, rather than
one-sided convolution padding, keeps every kernel's taps meaning what they meant in a centred
model: the parameters are the same shapes and a centred model's are a good start for a
low-latency one (``motion.train``'s ``init_from``).
The reach into the past grows by the same D_i (:func:`lookback_frames`). With L = 5 and one
post convolution: delays 0, 0, 8, 24 frames, look-ahead 1, 5, 5, 5, look-back 1, 5, 21, 53.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from syncers.data.layout import FEATURES_PER_FRAME


def centred_reach(levels: int, post_convs: int) -> tuple[int, ...]:
    """Per level, how many video frames after frame t the centred level's frame-t feature reads
    (and as many before: every convolution is centred and the interpolation reads the coarse
    frames on either side)."""
    out = []
    reach = post_convs                  # level 1: stem reads frame t only; each conv +1 frame
    for level in range(1, levels + 1):
        stride = 2 ** (level - 1)
        if level > 1:
            # entering conv (kernel 3 at the previous level's stride) + post convs at this one
            reach += stride // 2 + post_convs * stride
        interp = stride - 1 if level > 1 else 0
        out.append(reach + interp)
    return tuple(out)


def level_delays(levels: int, post_convs: int, lookahead: int | None = None
                 ) -> tuple[int, ...]:
    """Per level, the frames its features are delayed by so that none reads past ``lookahead``
    frames (None: centred, no delay; module docstring, "Low latency")."""
    reach = centred_reach(levels, post_convs)
    if lookahead is None:
        return (0,) * len(reach)
    return tuple(max(0, r - lookahead) for r in reach)


def lookahead_frames(levels: int, post_convs: int, lookahead: int | None = None
                     ) -> tuple[int, ...]:
    """Per level, how many video frames after frame t the level's frame-t feature reads
    (``lookahead``: the low-latency bound, None = centred)."""
    return tuple(r - d for r, d in zip(centred_reach(levels, post_convs),
                                       level_delays(levels, post_convs, lookahead)))


def lookback_frames(levels: int, post_convs: int, lookahead: int | None = None
                    ) -> tuple[int, ...]:
    """Per level, how many video frames *before* frame t the level's frame-t feature reads: the
    centred reach plus the level's delay. ``motion.stream`` relies on it to run the FPN on a
    bounded window of recent audio (tested there)."""
    return tuple(r + d for r, d in zip(centred_reach(levels, post_convs),
                                       level_delays(levels, post_convs, lookahead)))


def _conv(channels: int, stride: int, name: str) -> nn.Conv:
    # Explicit symmetric padding keeps output n centred on input stride·n (pyramid alignment).
    return nn.Conv(channels, kernel_size=(3,), strides=(stride,), padding=((1, 1),), name=name)


def interpolate_to(level_BxNxC: jax.Array, n_frames: int, stride: int, delay: int = 0
                   ) -> jax.Array:
    """Linear interpolation of a level with frames at t = stride·n back to ``n_frames`` frames,
    read ``delay`` frames late: frame t takes the value at t − delay. A delayed level is zero
    before its first frame: clamping to it, as the end is clamped, would read the audio under
    that frame, up to its reach past the clip's start — later than ``t + lookahead``."""
    n_level = level_BxNxC.shape[1]
    t = jnp.arange(n_frames) - delay
    lo = t // stride
    frac = ((t % stride) / stride).astype(level_BxNxC.dtype)
    lo_c = jnp.clip(lo, 0, n_level - 1)
    hi_c = jnp.clip(lo + 1, 0, n_level - 1)
    w_lo, w_hi = 1 - frac, frac
    if delay:
        w_lo, w_hi = jnp.where(lo >= 0, w_lo, 0), jnp.where(lo + 1 >= 0, w_hi, 0)
    return (level_BxNxC[:, lo_c] * w_lo[None, :, None]
            + level_BxNxC[:, hi_c] * w_hi[None, :, None])


class AudioFPN(nn.Module):
    """``[B, 4A, F]`` → ``[B, A, levels, C]``: the FPN's levels, each at the video-frame rate.
    ``lookahead``: None = centred (the paper's); else frame t reads no audio after t +
    ``lookahead`` (module docstring, "Low latency")."""
    channels: int
    levels: int = 4
    post_convs: int = 1
    lookahead: int | None = None

    @nn.compact
    def __call__(self, audio_Bx4AxF: jax.Array) -> jax.Array:
        n_feat = audio_Bx4AxF.shape[1]
        if n_feat % FEATURES_PER_FRAME:
            raise ValueError(f"audio features must be [B, 4A, F]; got {n_feat} frames")
        n_frames = n_feat // FEATURES_PER_FRAME
        x = nn.Conv(self.channels, kernel_size=(4,), strides=(4,), padding="VALID",
                    name="stem")(audio_Bx4AxF)
        x = nn.gelu(x)
        delays = level_delays(self.levels, self.post_convs, self.lookahead)
        outs = []
        for level in range(1, self.levels + 1):
            if level > 1:
                x = nn.gelu(_conv(self.channels, 2, f"down{level}")(x))
            for j in range(self.post_convs):
                # residual: the level keeps its entering features, convs add context
                x = x + nn.gelu(_conv(self.channels, 1, f"conv{level}_{j}")(x))
            y = nn.LayerNorm(name=f"norm{level}")(x)
            delay = delays[level - 1]
            # level 1 undelayed is the video grid already: taken as is (the centred FPN's
            # values, bit for bit)
            outs.append(y if level == 1 and delay == 0 else
                        interpolate_to(y, n_frames, 2 ** (level - 1), delay))
        return jnp.stack(outs, axis=2)
