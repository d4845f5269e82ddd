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
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from syncers.data.layout import FEATURES_PER_FRAME


def lookahead_frames(levels: int, post_convs: int) -> tuple[int, ...]:
    """Per level, how many video frames after frame t the level's frame-t feature reads."""
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


def lookback_frames(levels: int, post_convs: int) -> tuple[int, ...]:
    """Per level, how many video frames *before* frame t the level's frame-t feature reads: as
    many as it reads after (:func:`lookahead_frames`), because every convolution is centred and
    the interpolation reads the coarse frames on either side. ``motion.stream`` relies on it to
    run the FPN on a bounded window of recent audio (tested there)."""
    return lookahead_frames(levels, post_convs)


def _conv(channels: int, stride: int, name: str) -> nn.Conv:
    # Explicit symmetric padding keeps output n centred on input stride·n (pyramid alignment).
    return nn.Conv(channels, kernel_size=(3,), strides=(stride,), padding=((1, 1),), name=name)


def interpolate_to(level_BxNxC: jax.Array, n_frames: int, stride: int) -> jax.Array:
    """Linear interpolation of a level with frames at t = stride·n back to ``n_frames`` frames."""
    n_level = level_BxNxC.shape[1]
    t = jnp.arange(n_frames)
    lo = t // stride
    frac = ((t % stride) / stride).astype(level_BxNxC.dtype)
    lo_c = jnp.clip(lo, 0, n_level - 1)
    hi_c = jnp.clip(lo + 1, 0, n_level - 1)
    return (level_BxNxC[:, lo_c] * (1 - frac)[None, :, None]
            + level_BxNxC[:, hi_c] * frac[None, :, None])


class AudioFPN(nn.Module):
    """``[B, 4A, F]`` → ``[B, A, levels, C]``: the FPN's levels, each at the video-frame rate."""
    channels: int
    levels: int = 4
    post_convs: int = 1

    @nn.compact
    def __call__(self, audio_Bx4AxF: jax.Array) -> jax.Array:
        n_feat = audio_Bx4AxF.shape[1]
        if n_feat % FEATURES_PER_FRAME:
            raise ValueError(f"audio features must be [B, 4A, F]; got {n_feat} frames")
        n_frames = n_feat // FEATURES_PER_FRAME
        x = nn.Conv(self.channels, kernel_size=(4,), strides=(4,), padding="VALID",
                    name="stem")(audio_Bx4AxF)
        x = nn.gelu(x)
        outs = []
        for level in range(1, self.levels + 1):
            if level > 1:
                x = nn.gelu(_conv(self.channels, 2, f"down{level}")(x))
            for j in range(self.post_convs):
                # residual: the level keeps its entering features, convs add context
                x = x + nn.gelu(_conv(self.channels, 1, f"conv{level}_{j}")(x))
            y = nn.LayerNorm(name=f"norm{level}")(x)
            outs.append(interpolate_to(y, n_frames, 2 ** (level - 1)) if level > 1 else y)
        return jnp.stack(outs, axis=2)
