"""Reading files a user hands msync as untrusted input: a model directory, its ``model.json``,
a parameter file (docs/design.md, "CLI contract").

- :func:`existing` resolves a path once, without following a symlink loop forever and without
  mistaking a dangling link for a missing file; a device, FIFO or socket is refused where a
  regular file or a directory is wanted (reading ``/dev/zero`` never ends).
- :func:`read_bounded` reads a regular file of at most ``limit`` bytes, refusing a larger one
  with both figures before reading it.
- :func:`read_json` is :func:`read_bounded` then ``json.loads``; ``[[[[...`` two hundred
  thousand deep is a one-line error, not a ``RecursionError``.
- :func:`check_allocation` refuses a size read from a file that would not fit this machine's
  memory (:func:`memory_bytes`), with the figure, before anything that size is allocated.

Every refusal is an :class:`~syncers.run.errors.InputError` naming the path.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from syncers.run.errors import InputError


def existing(path: str | os.PathLike, kind: str) -> Path:
    """``path`` resolved (symlinks followed), which must exist and be a ``kind``: ``"file"`` (a
    regular file), ``"dir"`` or ``"any"`` (either). A symlink loop, a dangling link, a device,
    FIFO or socket are one-line :class:`InputError`\\ s."""
    if kind not in ("file", "dir", "any"):
        raise ValueError(f"kind must be file, dir or any; got {kind!r}")
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise InputError(path, "a symbolic link loop (the link points back at itself)") \
                from None
        if err.errno == errno.ENOENT and os.path.islink(path):
            raise InputError(path, f"a dangling symbolic link (to {os.readlink(path)!r}, "
                                   "which does not exist)") from None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            raise InputError(path, "no such file or directory") from None
        raise InputError(path, f"cannot be read ({err.strerror})") from None
    is_dir, is_file = stat.S_ISDIR(mode), stat.S_ISREG(mode)
    if not (is_dir or is_file):
        raise InputError(path, "not a regular file or directory (a device, FIFO or socket "
                               "cannot be read as input)")
    if kind == "file" and not is_file:
        raise InputError(path, "is a directory; a file is wanted here")
    if kind == "dir" and not is_dir:
        raise InputError(path, "not a directory")
    return Path(os.path.realpath(path))


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused when it holds more than ``limit`` (the
    size is read first, and at most ``limit + 1`` bytes are ever read)."""
    path = existing(path, "file")
    size = path.stat().st_size
    if size > limit:
        raise InputError(path, f"is {_human(size)}; at most {_human(limit)} is read here")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:                        # grew while being read
        raise InputError(path, f"holds more than {_human(limit)}; at most that is read here")
    return data


def read_json(path: str | os.PathLike, limit: int) -> Any:
    """``json.loads`` of :func:`read_bounded` (``limit`` bytes); not UTF-8, not JSON, or nested
    deeper than the parser's recursion allows is a one-line :class:`InputError`."""
    data = read_bounded(path, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                               f"{err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    except RecursionError:     # the C parser counts its depth against the recursion limit
        raise InputError(path, f"JSON nested deeper than {sys.getrecursionlimit()} levels "
                               "(no msync file nests more than a few)") from None


def memory_bytes() -> int:
    """This machine's physical memory in bytes (the cgroup's limit when it is lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = int(Path("/sys/fs/cgroup/memory.max").read_text().strip())
    except (OSError, ValueError):                # no cgroup v2 limit ("max") or none readable
        return total
    return min(total, limit)


def check_allocation(path: str | os.PathLike | None, what: str, n_bytes: int,
                     share: float = 0.5) -> None:
    """Refuse, with the figure, a size read from ``path`` that would take more than ``share``
    of this machine's memory (:func:`memory_bytes`), before it is allocated."""
    budget = int(share * memory_bytes())
    if n_bytes > budget:
        raise InputError(path, f"{what} would need {_human(n_bytes)}, more than this "
                               f"machine can hold ({_human(budget)}: {share:.0%} of its "
                               f"{_human(memory_bytes())} memory)")


def _human(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n_bytes < 1000 or unit == "TB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")
