"""The orbax store of converted FOMM weights: ``DIR/weights`` (orbax) + ``DIR/fomm.json``.

``fomm.json`` records the config and the source checkpoint's name and SHA-256, so a converted
directory is self-describing and later loads need neither torch nor the original file.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from render.fomm.config import FommConfig, from_dict, to_dict
from render.fomm.networks import abstract_variables
from syncers.run.errors import InputError, one_line
from syncers.run.rundir import quiet_library_logs

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
    abstract = abstract_variables(config)
    target = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    weights = path / WEIGHTS
    if not weights.is_dir():
        raise InputError(weights, "missing: convert the checkpoint again with `msync render "
                                  "convert`")
    _drop_closed_loop_noise()
    try:
        with quiet_library_logs():
            variables = ocp.StandardCheckpointer().restore(weights, target)
    except Exception as err:  # noqa: BLE001 - files cut short, missing or of another config
        raise InputError(weights, f"cannot be restored ({one_line(err)}); convert the "
                                  "checkpoint again with `msync render convert`") from None
    _check_shapes(variables, abstract, path)
    return variables, config, meta


def _check_shapes(variables, abstract, path: Path) -> None:
    """The restored weights must be exactly the config's: orbax restores what is stored, so a
    ``fomm.json`` edited away from its weights would otherwise fail deep inside a network."""
    want = {jax.tree_util.keystr(k): v.shape
            for k, v in jax.tree_util.tree_flatten_with_path(abstract)[0]}
    got = {jax.tree_util.keystr(k): np.shape(v)
           for k, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
    bad = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    if bad:
        key = bad[0]
        raise InputError(path / METADATA, f"its config does not match the weights beside it: "
                                          f"{key} is {list(got[key]) if key in got else 'absent'}"
                                          f" in {WEIGHTS}/, the config needs "
                                          f"{list(want[key]) if key in want else 'none'}"
                                          f" ({len(bad)} such); convert the checkpoint again")


def _drop_closed_loop_noise() -> None:
    """When one of a restore's reads fails, orbax closes its event loop while tensorstore's
    other reads still complete; each then reports 'Event loop is closed' through
    ``sys.unraisablehook``, as a traceback on stderr after the one-line error. Those reports,
    and only those, are dropped (for the rest of the process: they come after the restore)."""
    previous = sys.unraisablehook
    if getattr(previous, "msync_drops_closed_loop", False):
        return

    def hook(unraisable) -> None:
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        previous(unraisable)

    hook.msync_drops_closed_loop = True
    sys.unraisablehook = hook
