"""Multi-scale sync metrics on whole clips: AV-Off, AV-Conf (SyncNet protocol) and AVS_u/m/v.

Per level i, for every offset δ ∈ [−D, D] (D = 15 level frames) the mean embedding distance
``d(δ) = mean_n −S(a_{n+δ}, x_n)`` between motion segment n and the audio segment δ level
frames later (``S`` the syncer's score: cos, or −L1/√E for ``l1contrast``; for cos this is
1 − cos up to a constant, SyncNet's distance of unit vectors up to a monotone map).
``AV-Off = argmin_δ d(δ)`` (in level frames; 0 is in sync, −k means the motion matches the
audio of k frames earlier), ``AV-Conf = median_δ d − min_δ d`` (Chung & Zisserman 2016).

Overlap rule: only whole windows count — motion segment n when its 5 frames lie inside the
clip, paired with audio segment n+δ only when that audio window lies inside the clip too — and
every offset must keep at least ``MIN_OVERLAP`` = 5 such pairs (:func:`overlap_counts`), which
an 8 s clip (200 frames, 25 at level 4) just meets at level 4.

``AVS_u`` = mean cos(e_a, e_x) at δ = 0; with a reference (ground-truth) motion,
``AVS_v`` = mean cos(e_x(generated), e_x(reference)) and ``AVS_m`` = mean cos of the joint
embeddings ``unit(e_x ⊙ e_a)`` of generated and reference — the keypoint-space analogues of
AV-HuBERT's metrics (the elementwise product is the joint code whose sum is the sync score; a
concatenation of unit vectors would make AVS_m a function of AVS_v).

Everything is vectorised over offsets and clips: one jitted call per level.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from syncers.data.layout import FEATURES_PER_FRAME
from syncers.data.pyramid import audio_centers, segments, temporal_pyramid
from syncers.models import AUDIO_FRAMES, MOTION_FRAMES, Syncer, score_fn
from syncers.sampling import valid_centres

MAX_OFFSET = 15
MIN_OVERLAP = 5


def overlap_mask(n_frames: int, level: int, max_offset: int = MAX_OFFSET) -> np.ndarray:
    """``[T_i, 2D+1]`` bool: motion segment n pairs with audio segment n+δ (whole windows)."""
    (m_lo, m_hi), (a_lo, a_hi) = valid_centres(n_frames, level)
    n_level = -(-n_frames // 2 ** (level - 1))
    centre = np.arange(n_level)[:, None]
    partner = centre + np.arange(-max_offset, max_offset + 1)[None, :]
    return (centre >= m_lo) & (centre <= m_hi) & (partner >= a_lo) & (partner <= a_hi)


def overlap_counts(n_frames: int, level: int, max_offset: int = MAX_OFFSET) -> np.ndarray:
    """Pairs per offset ``[2D+1]`` for a clip of ``n_frames`` video frames at ``level``."""
    return overlap_mask(n_frames, level, max_offset).sum(axis=0)


@functools.partial(jax.jit, static_argnames=("model", "level", "kind", "k", "score",
                                             "max_offset"))
def level_metrics(params, motion_CxTxM: jax.Array, audio_CxAxF: jax.Array,
                  reference_CxTxM: jax.Array | None = None, *, model: Syncer, level: int,
                  kind: str = "box", k: int = 3, score: str = "cos",
                  max_offset: int = MAX_OFFSET) -> dict[str, jax.Array]:
    """Per-clip metrics at one level from level-1 motion ``[C, T, M]``, audio ``[C, 4T, F]``.

    Returns ``{"av_off", "av_conf", "avs_u", "distances" [C, 2D+1]}`` (and ``"avs_m"``,
    ``"avs_v"`` with a reference motion of the same shape), each ``[C]`` unless stated.
    """
    n_clips, n_frames = motion_CxTxM.shape[:2]
    if audio_CxAxF.shape[:2] != (n_clips, FEATURES_PER_FRAME * n_frames):
        raise ValueError(f"audio must be [C, 4T, F] = [{n_clips}, {FEATURES_PER_FRAME * n_frames}, "
                         f"F] for motion "
                         f"{list(motion_CxTxM.shape)}; got {list(audio_CxAxF.shape)}")
    mask_NxD = overlap_mask(n_frames, level, max_offset)
    e_x = _embed_motion(params, motion_CxTxM, model, level, kind, k)              # [C, T_i, E]
    e_a = _embed_audio(params, audio_CxAxF, model, level, kind, k)
    out = offset_metrics(e_x, e_a, mask_NxD, score, max_offset)
    in_sync = jnp.asarray(mask_NxD[:, max_offset])                     # δ = 0 pairs

    def mean_in_sync(values_CxN):
        return jnp.sum(jnp.where(in_sync, values_CxN, 0.0), axis=1) / in_sync.sum()

    out["avs_u"] = mean_in_sync(jnp.sum(e_x * e_a, axis=-1))
    if reference_CxTxM is not None:
        if reference_CxTxM.shape != motion_CxTxM.shape:
            raise ValueError(f"reference motion must match motion {list(motion_CxTxM.shape)}; "
                             f"got {list(reference_CxTxM.shape)}")
        e_r = _embed_motion(params, reference_CxTxM, model, level, kind, k)
        out["avs_v"] = mean_in_sync(jnp.sum(e_x * e_r, axis=-1))
        joint_x, joint_r = _unit(e_x * e_a), _unit(e_r * e_a)
        out["avs_m"] = mean_in_sync(jnp.sum(joint_x * joint_r, axis=-1))
    return out


def _embed_motion(params, motion_CxTxM: jax.Array, model: Syncer, level: int, kind: str,
                  k: int) -> jax.Array:
    """Per-frame motion embeddings of one level ``[C, T_i, E]`` (T_i = ceil(T / 2^(i-1)))."""
    n_frames = motion_CxTxM.shape[1]
    n = jnp.arange(-(-n_frames // 2 ** (level - 1)))

    def embed(motion_TxM):
        segs = segments(temporal_pyramid(motion_TxM, level, kind, k)[-1], n, MOTION_FRAMES)
        return model.apply(params, segs, method=Syncer.embed_motion)

    return jax.vmap(embed)(motion_CxTxM)


def _embed_audio(params, audio_CxAxF: jax.Array, model: Syncer, level: int, kind: str,
                 k: int) -> jax.Array:
    """Per-frame audio embeddings of one level ``[C, T_i, E]`` from audio ``[C, 4T, F]``."""
    n_frames = audio_CxAxF.shape[1] // FEATURES_PER_FRAME
    n = jnp.arange(-(-n_frames // 2 ** (level - 1)))

    def embed(audio_AxF):
        segs = segments(temporal_pyramid(audio_AxF, level, kind, k)[-1],
                        audio_centers(n, level), AUDIO_FRAMES)
        return model.apply(params, segs, method=Syncer.embed_audio)

    return jax.vmap(embed)(audio_CxAxF)


@functools.partial(jax.jit, static_argnames=("model", "level", "kind", "k", "score",
                                             "max_offset"))
def pair_metrics(params, motion_RxTxM: jax.Array, audio_CxAxF: jax.Array, *, model: Syncer,
                 level: int, kind: str = "box", k: int = 3, score: str = "cos",
                 max_offset: int = MAX_OFFSET) -> dict[str, jax.Array]:
    """AV-Off of *every* (motion r, audio c) pair at one level: motion ``[R, T, M]``, audio
    ``[C, 4T, F]`` (the same T) → ``{"av_off" [R, C], "distances" [R, C, 2D+1]}``.

    Each motion and audio is embedded once; the pairs then differ only in which embeddings
    :func:`offset_metrics` compares, so pair (r, c) equals :func:`level_metrics` of motion r
    with audio c. Random pairs for a permutation test (``msync analyze``) come from here.
    """
    n_frames = motion_RxTxM.shape[1]
    if audio_CxAxF.shape[1] != FEATURES_PER_FRAME * n_frames:
        raise ValueError(f"audio must be [C, {FEATURES_PER_FRAME * n_frames}, F] for motion "
                         f"{list(motion_RxTxM.shape)}; got {list(audio_CxAxF.shape)}")
    mask_NxD = overlap_mask(n_frames, level, max_offset)
    e_x = _embed_motion(params, motion_RxTxM, model, level, kind, k)             # [R, T_i, E]
    e_a = _embed_audio(params, audio_CxAxF, model, level, kind, k)              # [C, T_i, E]

    def with_audio(e_a_NxE):     # every motion against one audio: [R] offsets, [R, 2D+1]
        out = offset_metrics(e_x, jnp.broadcast_to(e_a_NxE, e_x.shape), mask_NxD, score,
                             max_offset)
        return out["av_off"], out["distances"]

    av_off, distances = jax.lax.map(with_audio, e_a)                   # [C, R], [C, R, 2D+1]
    return {"av_off": av_off.T, "distances": jnp.swapaxes(distances, 0, 1)}


def offset_metrics(e_x_CxNxE: jax.Array, e_a_CxNxE: jax.Array, mask_NxD: np.ndarray,
                   score: str = "cos", max_offset: int = MAX_OFFSET) -> dict[str, jax.Array]:
    """AV-Off/AV-Conf from per-frame embeddings of one level (segment n ↔ row n).

    ``mask [N, 2D+1]`` (:func:`overlap_mask`) says which (n, n+δ) pairs count. Returns
    ``{"av_off" [C], "av_conf" [C], "distances" [C, 2D+1]}``.
    """
    offsets = jnp.arange(-max_offset, max_offset + 1)
    n_level = e_x_CxNxE.shape[1]
    partner_NxD = jnp.clip(jnp.arange(n_level)[:, None] + offsets[None, :], 0, n_level - 1)
    if score == "cos":
        # One [N, N] similarity matrix per clip, then its 2D+1 diagonals by a gather.
        sim = jnp.einsum("cne,cme->cnm", e_x_CxNxE, e_a_CxNxE)
        scores = jnp.take_along_axis(
            sim, jnp.broadcast_to(partner_NxD, sim.shape[:2] + partner_NxD.shape[1:]), axis=2)
    else:
        # −L1 has no matrix form; gather partners per clip (lax.map bounds the memory).
        fn = score_fn(score)
        scores = jax.lax.map(lambda xa: fn(xa[1][partner_NxD], xa[0][:, None, :]),
                             (e_x_CxNxE, e_a_CxNxE))
    mask = jnp.asarray(mask_NxD)
    distances = -jnp.sum(jnp.where(mask, scores, 0.0), axis=1) / mask.sum(axis=0)
    return {"av_off": offsets[jnp.argmin(distances, axis=1)],
            "av_conf": jnp.median(distances, axis=1) - jnp.min(distances, axis=1),
            "distances": distances}


def summarise(per_clip: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over clips: ``av_off_mean``/``av_off_std`` are of |AV-Off| (level frames)."""
    off = np.asarray(per_clip["av_off"], np.float64)
    out = {"av_off_mean": float(np.mean(np.abs(off))), "av_off_std": float(np.std(np.abs(off))),
           "av_off_signed_mean": float(np.mean(off)),
           "av_conf_mean": float(np.mean(per_clip["av_conf"])),
           "avs_u_mean": float(np.mean(per_clip["avs_u"]))}
    for name in ("avs_m", "avs_v"):
        if name in per_clip:
            out[f"{name}_mean"] = float(np.mean(per_clip[name]))
    return out


def _unit(v):
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)
