"""A training run's directory, as both trainers (``syncers.train``, ``motion.train``) keep it.

- ``checkpoints``: an orbax ``CheckpointManager`` (:func:`checkpoint_manager`): synchronous,
  atomic saves (orbax writes into a temporary directory and renames it when complete; what a
  killed save left is removed when the trainer reopens it — a reader never removes anything);
- ``run.json``: written atomically (:func:`write_json`: a ``.partial`` file, then a rename), read
  with a one-line error when damaged (:func:`read_json`);
- ``metrics.jsonl``: one JSON row per log; a resumed run first drops the rows it will write
  again (:func:`truncate_metrics`);
- ``config.yaml``: a rerun with the same ``--out`` resumes only under the same config; the keys
  that differ are :func:`config_diff`'s;
- ``.lock``: :func:`locked` holds it (``fcntl.flock``, exclusive) while a command writes the
  run, so a second msync process on the same directory is refused instead of interleaving
  with the first; the OS releases it when the holder exits, however it dies.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

from syncers.run.errors import InputError, one_line
from syncers.run.outputs import leftovers, published

LOCK = ".lock"
# A run's own files (beside checkpoints/; the generator's also has model/).
RUN_FILES = ("config.yaml", "run.json", "metrics.jsonl", "model")
# Locks this process holds: real path of the lock file -> [descriptor, depth]. A command that
# locks a directory may call another that locks it again (flock would refuse the second
# descriptor even in the same process).
_HELD: dict[str, list[int]] = {}


@contextlib.contextmanager
def locked(directory: str | os.PathLike, hold: bool = True) -> Iterator[Path]:
    """Hold ``directory/.lock`` (the directory is created) for the block: an exclusive advisory
    ``flock``, released by the OS when the process ends, even by SIGKILL. Another process
    holding it is bad input naming its pid. ``hold=False`` (the non-primary processes of a
    ``--distributed`` run, which share process 0's directory) takes no lock."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(directory, f"cannot create the directory ({err.strerror})") from None
    if not hold:
        yield directory
        return
    path = directory / LOCK
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        try:
            yield directory
        finally:
            _HELD[key][1] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            # A file system without locks (some network mounts): run, unprotected.
            os.close(fd)
            print(f"msync: warning: {path}: cannot lock the run ({err.strerror}); make sure "
                  "no other msync process writes it", file=sys.stderr)
            yield directory
            return
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise InputError(directory, f"is in use by another msync process (pid {holder}); "
                                    "wait for it to end, or use another directory") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD[key] = [fd, 1]
        yield directory
    finally:
        _HELD.pop(key, None)
        os.close(fd)                 # releases the lock


def remove_leftovers(*paths: str | os.PathLike) -> list[Path]:
    """Remove what killed writers left of ``paths`` (``syncers.run.outputs.leftovers``: msync's
    own temporary names, nothing else); call with the run locked (:func:`locked`), when no
    writer of this run can be running. Returns what was removed."""
    removed = []
    for path in paths:
        for left in leftovers(path):
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left)
            else:
                left.unlink(missing_ok=True)
            removed.append(left)
    return removed


def checkpoint_manager(directory: Path, max_to_keep: int | None = None, *,
                       reader: bool = False):
    """An orbax manager of ``directory``; a directory orbax refuses is bad input.

    A trainer's (the run locked, :func:`locked`) creates the directory, keeps ``max_to_keep``
    steps and removes what a killed save left (orbax's ``*.orbax-checkpoint-tmp*``). A
    ``reader``'s (``evaluate``, ``train generator`` reading syncers, ``analyze``) only restores:
    it creates, deletes and cleans up nothing, so the temporary directory of a save that a
    running trainer is writing is left alone."""
    import orbax.checkpoint as ocp
    if directory.exists() and not directory.is_dir():
        # orbax accepts the path here and fails only at the first save, after training.
        raise InputError(directory, "exists and is not a directory (choose another --out)")
    if reader and not directory.is_dir():
        raise InputError(directory, "missing checkpoint directory")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if reader else max_to_keep, create=not reader,
        enable_async_checkpointing=False, cleanup_tmp_directories=not reader)
    try:
        with quiet_library_logs():      # e.g. a damaged step's metadata (restore reports it)
            return ocp.CheckpointManager(directory.resolve(), options=options)
    except Exception as err:  # noqa: BLE001 - anything orbax dislikes about the folder
        raise InputError(directory, f"not a usable checkpoint directory ({one_line(err)})") \
            from None


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Keep orbax's log lines (absl's logger) off stderr for the block: what they say about a
    damaged checkpoint reaches the user as msync's one line instead."""
    logger = logging.getLogger("absl")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


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
