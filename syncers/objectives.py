"""Contrastive objectives for the syncers (paper eq. 2 and the alternatives of
docs/design.md, "Syncers").

Every objective scores a batch of B motion segments against C = 1 + N audio candidates each,
candidate 0 being the positive (the audio of the same time) and the rest negatives:

- ``infonce`` (paper eq. 2, default): ``−log softmax_j(S(a_j, x)/τ)[0]``.
- ``bce``: each candidate is a binary decision ``σ(S/τ)`` (Wav2Lip's lip-expert loss); the
  positive's term plus the mean of the negatives' terms, so N does not tip the balance.
- ``clip``: symmetric contrastive loss over the B×B similarity of the batch's positive pairs
  (Radford et al. 2021), the motion→audio side also seeing each row's own negatives.
- ``l1contrast``: infonce with ``−‖e_a − e_x‖₁/√E`` as the score instead of cos.
- ``triplet``: ``mean_j max(0, m − S_pos + S_neg_j)``, the margin loss ``analyze`` uses.

τ (``temperature``) lives in the objective's own parameters as ``log τ`` and is learnt unless
``learn_temperature: false``; ``triplet`` ignores it. ``accuracy`` is the fraction of rows
whose highest-scoring candidate is the positive — the same definition for every objective.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from syncers.models import score_fn
from syncers.run.config import non_negative, positive

Name = Literal["infonce", "bce", "clip", "l1contrast", "triplet"]
NAMES: tuple[str, ...] = ("infonce", "bce", "clip", "l1contrast", "triplet")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    name: Name = "infonce"
    temperature: float = positive(0.1)        # initial τ
    learn_temperature: bool = True
    min_temperature: float = positive(0.01)   # τ is clipped here (CLIP's logit-scale cap of 100)
    margin: float = non_negative(0.2)         # triplet only


def score_kind(config: ObjectiveConfig) -> str:
    """Which pair score the syncer uses at inference (``models.score_fn``)."""
    return "l1" if config.name == "l1contrast" else "cos"


def init_params(config: ObjectiveConfig) -> dict:
    """The objective's parameters: ``{"log_temperature": []}``."""
    return {"log_temperature": jnp.log(jnp.float32(config.temperature))}


def temperature(config: ObjectiveConfig, params: dict) -> jax.Array:
    log_tau = params["log_temperature"]
    if not config.learn_temperature:
        log_tau = jax.lax.stop_gradient(log_tau)
    return jnp.maximum(jnp.exp(log_tau), config.min_temperature)


def loss(config: ObjectiveConfig, params: dict, audio_BxCxE: jax.Array,
         motion_BxE: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(loss, accuracy)`` for unit embeddings; candidate 0 of each row is the positive."""
    if audio_BxCxE.ndim != 3 or motion_BxE.ndim != 2 or \
            audio_BxCxE.shape[0] != motion_BxE.shape[0] or \
            audio_BxCxE.shape[2] != motion_BxE.shape[1]:
        raise ValueError(f"expected audio [B, C, E] and motion [B, E]; got "
                         f"{list(audio_BxCxE.shape)} and {list(motion_BxE.shape)}")
    tau = temperature(config, params)
    scores_BxC = score_fn(score_kind(config))(audio_BxCxE, motion_BxE[:, None, :])
    accuracy = jnp.mean(jnp.argmax(scores_BxC, axis=1) == 0)
    batch = scores_BxC.shape[0]
    positive = jnp.zeros((batch,), jnp.int32)
    if config.name in ("infonce", "l1contrast"):
        value = optax.softmax_cross_entropy_with_integer_labels(scores_BxC / tau, positive)
    elif config.name == "bce":
        logits = scores_BxC / tau
        value = (optax.sigmoid_binary_cross_entropy(logits[:, 0], 1.0)
                 + jnp.mean(optax.sigmoid_binary_cross_entropy(logits[:, 1:], 0.0), axis=1))
    elif config.name == "clip":
        pairs_BxB = motion_BxE @ audio_BxCxE[:, 0].T / tau          # [motion i, audio j]
        m2a = jnp.concatenate([pairs_BxB, scores_BxC[:, 1:] / tau], axis=1)
        labels = jnp.arange(batch)
        value = 0.5 * (optax.softmax_cross_entropy_with_integer_labels(m2a, labels)
                       + optax.softmax_cross_entropy_with_integer_labels(pairs_BxB.T, labels))
    elif config.name == "triplet":
        value = jnp.mean(jax.nn.relu(config.margin - scores_BxC[:, :1] + scores_BxC[:, 1:]),
                         axis=1)
    else:
        raise ValueError(f"unknown objective {config.name!r}; choose from {', '.join(NAMES)}")
    return jnp.mean(value), accuracy
