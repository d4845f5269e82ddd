"""The orbax store of converted FOMM weights: ``DIR/weights`` (orbax) + ``DIR/fomm.json``.

``fomm.json`` records the config and the source checkpoint's name and SHA-256, so a converted
directory is self-describing and later loads need neither torch nor the original file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from render.fomm.config import FommConfig, from_dict, to_dict
from render.fomm.networks import abstract_variables
from syncers.run.errors import InputError

METADATA = "fomm.json"
WEIGHTS = "weights"


def sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (recorded so a converted directory names its exact source)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_orbax(out: str | os.PathLike, variables: Mapping[str, Any], config: FommConfig,
               source_sha256: str, source_name: str) -> Path:
    """Write ``out/weights`` (orbax) and ``out/fomm.json`` (config, source file and SHA-256)."""
    import orbax.checkpoint as ocp
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / WEIGHTS, jax.tree_util.tree_map(np.asarray, variables), force=True)
    checkpointer.wait_until_finished()
    meta = {"format": "msync-fomm-v1", "source": source_name, "source_sha256": source_sha256,
            "config": to_dict(config)}
    (out / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def load_orbax(path: str | os.PathLike, config: FommConfig | None = None):
    """``(variables, config, metadata)`` from a :func:`save_orbax` directory (no torch)."""
    import orbax.checkpoint as ocp
    path = Path(path).resolve()
    try:
        meta = json.loads((path / METADATA).read_text())
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a converted FOMM directory ({err})") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise InputError(path / METADATA, "no config recorded")
    stored = from_dict(meta["config"], source=os.fspath(path / METADATA))
    if config is None:
        config = stored
    elif to_dict(config)["model_params"] != to_dict(stored)["model_params"]:
        raise InputError(path, "its model_params differ from the requested config")
    target = jax.tree_util.tree_map(
        lambda s: np.zeros(s.shape, s.dtype), abstract_variables(config))
    variables = ocp.StandardCheckpointer().restore(path / WEIGHTS, target)
    return variables, config, meta
