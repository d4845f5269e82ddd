"""Losses of the MS-Sync generator (paper eq. 6–7, 11–14, 16).

- Hinge (geometric GAN) losses, eq. 11–13: ``L_D = E[max(0, 1 − D(real))] + E[max(0, 1 +
  D(fake))]`` for each discriminator, ``L_G = −E[D(fake)]``.
- ``L_rec = ||x − G(x0, a)||²`` (eq. 14), as the mean over frames, keypoints and values.
- ``L_AV^MS = Σ_i −mean_t S^i(a^i_t, x^i_t)`` (eq. 6–7): temporal pyramids (eq. 5,
  ``syncers.data.pyramid``) of the generated motion and of its audio; at level i every whole 5-frame
  motion segment (centres 2..T_i−3) is scored against its 20-feature audio window by the frozen
  syncer S^i. With ``multiscale=False`` only level 1 is used (the paper's single-scale
  ablation). The syncers enter as a callable ``score(level, audio [N, 20, F], motion [N, 5, 60])
  -> [N]`` closing over their frozen parameters, so this module does not depend on their
  implementation. An audio window reaching past the sequence is edge-clamped
  (``segments(mode="clip")``): at level 4 of a 40-frame sequence, one feature of one window.
- The generator's total, eq. 16: ``λav·L_AV^MS + λadv·(L_Gf + L_Gs) + λrec·L_rec``.
- Departures, off by default: ``λ_vel·L_vel`` (frame-to-frame changes) and ``head_weight``, the
  weight of the head's shared part of the L_rec and L_vel errors (:func:`head_weighted`).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import jax
import jax.numpy as jnp

from syncers.data.landmark_space import RIGID
from syncers.data.layout import FEATURES_PER_FRAME
from syncers.data.pyramid import (
    AUDIO_SEGMENT_FRAMES,
    SEGMENT_FRAMES,
    audio_centers,
    segments,
    temporal_pyramid,
)
from syncers.run.config import count, non_negative, ranged

ScoreFn = Callable[[int, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class LossConfig:
    lambda_av: float = non_negative(8.0)
    lambda_adv: float = non_negative(0.1)
    lambda_rec: float = non_negative(1.0)
    multiscale_av: bool = True      # False: L_AV on level 1 only (ablation)
    levels: int = ranged(4, ge=1, le=4)   # syncer levels scored (the pyramid has 4)
    frame_discriminator: bool = True
    sequence_discriminator: bool = True
    pyramid_kind: Literal["box", "gaussian"] = "box"
    pyramid_k: int = count(3)
    # Departure from eq. 16 (0 = the paper): λ_vel·L_vel, the squared error of the generated
    # frame-to-frame changes against the ground truth's (docs/design.md, "Long generation").
    # L_rec weighs a velocity error by how far it carries the positions, so fast jitter that
    # averages out costs almost nothing there; L_vel charges it frame by frame.
    lambda_vel: float = non_negative(0.0)
    # Departure from eq. 14 (1 = the paper): the weight of the head's part of L_rec and L_vel
    # against the face's own motion (:func:`head_weighted`). Speech leaves the head's path
    # open (many paths fit one sentence), and a squared error on it is least for the average
    # path: a small, slow head. The mouth's shape is far more determined by the speech.
    head_weight: float = ranged(1.0, ge=0.0, le=1.0)


def d_hinge(real, fake) -> jax.Array:
    """Eq. 11–12: the discriminator's hinge loss on its scores for real and generated data."""
    return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def g_hinge(fake) -> jax.Array:
    """Eq. 13: the generator's adversarial loss."""
    return -jnp.mean(fake)


def head_weighted(error_BxTxKx6, head_weight: float) -> jax.Array:
    """A keypoint error ``[B, T, 10, 6]`` whose head part — the error of the rigid keypoints'
    mean position (``landmark_space.RIGID``: brows, eyes, nose), shared by every keypoint's
    position — is scaled by √head_weight, so its squared mean weighs it by ``head_weight``;
    the rest (each keypoint's position relative to the head, the jacobians) is unchanged."""
    if head_weight == 1.0:
        return error_BxTxKx6
    head = jnp.mean(error_BxTxKx6[..., list(RIGID), :2], axis=-2, keepdims=True)
    shrink = (1.0 - jnp.sqrt(head_weight)) * head
    return error_BxTxKx6.at[..., :2].add(-shrink)


def reconstruction(x_true, x_gen, head_weight: float = 1.0) -> jax.Array:
    """Eq. 14 on ``[B, T, 10, 6]`` sequences (``head_weight``: :func:`head_weighted`)."""
    return jnp.mean(head_weighted(x_true - x_gen, head_weight) ** 2)


def velocity(before_true, x_true, x_gen, before_gen=None, head_weight: float = 1.0
             ) -> jax.Array:
    """L_vel on ``[B, T, 10, 6]`` sequences: mean squared error of ``x_t − x_{t−1}``; the first
    difference is taken from the frame before each sequence (``[B, 10, 6]``; the generated
    one's defaults to the true one's, the last observed frame). ``head_weight``:
    :func:`head_weighted`."""
    before_gen = before_true if before_gen is None else before_gen

    def diff(before, x):
        return jnp.diff(jnp.concatenate([before[:, None], x], axis=1), axis=1)
    error = diff(before_true, x_true) - diff(before_gen, x_gen)
    return jnp.mean(head_weighted(error, head_weight) ** 2)


def av_sync(score: ScoreFn, motion_BxTxKx6, audio_Bx4TxF, levels=(1, 2, 3, 4), kind="box",
            k: int = 3) -> dict[int, jax.Array]:
    """``{level: mean_t S^i(a^i_t, x^i_t)}`` over the batch (eq. 6–7's inner terms)."""
    batch, n_frames = motion_BxTxKx6.shape[:2]
    if audio_Bx4TxF.shape[:2] != (batch, FEATURES_PER_FRAME * n_frames):
        raise ValueError(f"audio must be [B={batch}, 4T={FEATURES_PER_FRAME * n_frames}, F]; got "
                         f"{tuple(audio_Bx4TxF.shape)}")
    top = max(levels)
    motion = motion_BxTxKx6.reshape(batch, n_frames, -1)
    pyr_x = jax.vmap(lambda m: temporal_pyramid(m, top, kind, k))(motion)
    pyr_a = jax.vmap(lambda a: temporal_pyramid(a, top, kind, k))(audio_Bx4TxF)
    out = {}
    for level in levels:
        x_i, a_i = pyr_x[level - 1], pyr_a[level - 1]
        half = SEGMENT_FRAMES // 2
        centres = jnp.arange(half, x_i.shape[1] - half)
        if centres.size == 0:
            raise ValueError(f"a {n_frames}-frame sequence has no whole segment at level {level}")
        # the lambdas run in this iteration, so they read this level's centres
        seg_x = jax.vmap(lambda m: segments(m, centres))(x_i)  # noqa: B023  [B, N, 5, 60]
        audio_at = audio_centers(centres, level)
        seg_a = jax.vmap(lambda a: segments(a, audio_at, AUDIO_SEGMENT_FRAMES))(  # noqa: B023
            a_i)                                                           # [B, N, 20, F]
        s = score(level, seg_a.reshape((-1,) + seg_a.shape[2:]),
                  seg_x.reshape((-1,) + seg_x.shape[2:]))
        out[level] = jnp.mean(s)
    return out


def av_multiscale(score: ScoreFn, motion_BxTxKx6, audio_Bx4TxF, config: LossConfig
                  ) -> tuple[jax.Array, dict[int, jax.Array]]:
    """Eq. 6–7: ``(L_AV^MS, {level: mean score})``; level 1 only when not ``multiscale_av``."""
    levels = tuple(range(1, config.levels + 1)) if config.multiscale_av else (1,)
    scores = av_sync(score, motion_BxTxKx6, audio_Bx4TxF, levels, config.pyramid_kind,
                     config.pyramid_k)
    return -sum(scores.values()), scores


def generator_total(config: LossConfig, l_av, l_gf, l_gs, l_rec, l_vel=0.0) -> jax.Array:
    """Eq. 16 (switched-off discriminators contribute nothing), plus ``λ_vel·L_vel``."""
    adv = (l_gf if config.frame_discriminator else 0.0) + (
        l_gs if config.sequence_discriminator else 0.0)
    total = config.lambda_av * l_av + config.lambda_adv * adv + config.lambda_rec * l_rec
    return total + config.lambda_vel * l_vel if config.lambda_vel else total
