"""The two FOMM networks msync runs (``kp_detector``, ``generator``), keyed like the official
checkpoint, and their variables' shapes (what a converted or stored checkpoint must fill)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from render.fomm.config import FommConfig
from render.fomm.generator import OcclusionAwareGenerator
from render.fomm.keypoint_detector import KPDetector

NETWORKS = ("kp_detector", "generator")


def networks(config: FommConfig) -> dict[str, Any]:
    """The two Flax modules of a config, keyed like the checkpoint."""
    return {"kp_detector": KPDetector(config.kp_detector),
            "generator": OcclusionAwareGenerator(config.generator, config.grid_align_corners)}


def abstract_variables(config: FommConfig) -> dict[str, Any]:
    """``{network: {"params": .., "batch_stats": ..}}`` as ShapeDtypeStructs (no compute)."""
    c = config.generator
    # Any image size the networks accept gives the same parameter shapes.
    inv_scale = int(1 / min(config.kp_detector.scale_factor, c.dense_motion.scale_factor))
    size = 2 ** max(c.num_down_blocks, config.kp_detector.num_blocks,
                    c.dense_motion.num_blocks) * inv_scale
    image = jnp.zeros((1, size, size, c.num_channels), jnp.float32)
    k = c.num_kp
    kp = {"value": jnp.zeros((1, k, 2)), "jacobian": jnp.broadcast_to(jnp.eye(2), (1, k, 2, 2))}
    mods = networks(config)
    key = jax.random.PRNGKey(0)
    return {"kp_detector": jax.eval_shape(mods["kp_detector"].init, key, image),
            "generator": jax.eval_shape(mods["generator"].init, key, image, kp, kp)}
