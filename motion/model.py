"""A generator ready to run: its parameters, its config and its per-frame weights.

This is what ``motion.saved_model`` loads and saves, what ``motion.train`` exports, and what
``motion.generate`` rolls out. It lives beside the model rather than in a command so that every
layer may import it.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax

from motion.generator import GeneratorConfig
from motion.rollout import frame_weights


@flax.struct.dataclass
class GeneratorModel:
    """A generator ready to run: its parameters, (static) config and, once :func:`ready` made
    them, its per-frame weights in the rollout's layout (``motion.rollout.frame_weights``).
    ``frame_weights`` are derived from ``params``: a model with other parameters needs
    ``frame_weights=None`` (then :func:`ready` again), or it would generate with stale ones."""
    params: Any
    config: GeneratorConfig = flax.struct.field(pytree_node=False)
    frame_weights: Any = None


def ready(model: GeneratorModel) -> GeneratorModel:
    """``model`` with its per-frame weights prepared once, so that each generation call skips
    transposing them (what a loaded model does: ``motion.saved_model.load_model``)."""
    if model.frame_weights is not None:
        return model
    weights = jax.jit(frame_weights, static_argnums=1)(model.params, model.config)
    return model.replace(frame_weights=weights)
