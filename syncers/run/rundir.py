"""A training run's directory, as both trainers (``syncers.train``, ``motion.train``) keep it.

- ``checkpoints``: an orbax ``CheckpointManager`` (:func:`checkpoint_manager`): synchronous,
  atomic saves (orbax writes into a temporary directory and renames it when complete; what a
  killed save left is removed on open);
- ``run.json``: written atomically (:func:`write_json`: a ``.partial`` file, then a rename), read
  with a one-line error when damaged (:func:`read_json`);
- ``metrics.jsonl``: one JSON row per log; a resumed run first drops the rows it will write
  again (:func:`truncate_metrics`);
- ``config.yaml``: a rerun with the same ``--out`` resumes only under the same config; the keys
  that differ are :func:`config_diff`'s.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from syncers.run.errors import InputError, one_line
from syncers.run.outputs import published


def checkpoint_manager(directory: Path, max_to_keep: int):
    """An orbax manager of ``directory`` (created if missing) keeping ``max_to_keep`` steps; a
    directory orbax refuses is bad input."""
    import orbax.checkpoint as ocp
    if directory.exists() and not directory.is_dir():
        # orbax accepts the path here and fails only at the first save, after training.
        raise InputError(directory, "exists and is not a directory (choose another --out)")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False,
        cleanup_tmp_directories=True)
    try:
        return ocp.CheckpointManager(directory.resolve(), options=options)
    except Exception as err:  # noqa: BLE001 - anything orbax dislikes about the folder
        raise InputError(directory, f"not a usable checkpoint directory ({one_line(err)})") \
            from None


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (a key missing on one side
    differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [k for key in sorted(set(a) | set(b))
                for k in config_diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def truncate_metrics(path: Path, restored: dict[Any, int]) -> None:
    """Drop the rows of ``metrics.jsonl`` a resumed run will write again: those past the
    restored step of their ``level`` (``restored[None]`` for rows without one). Rows of levels
    this invocation does not train (not in ``restored``) are all kept."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue        # a line cut short by a kill
        level = row.get("level")
        if level not in restored or row.get("step", 0) <= restored[level]:
            keep.append(line)
    atomic_write(path, "".join(line + "\n" for line in keep))


def read_json(path: Path) -> dict:
    """``path``'s JSON object, ``{}`` when the file does not exist."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1) + "\n")


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old or the new file, never a part
    of one (``syncers.run.outputs.published``: a unique temporary name, then a rename)."""
    with published(path) as partial:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data)
