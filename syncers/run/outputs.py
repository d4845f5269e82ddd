"""Files a command publishes: never half-written, never colliding, never over an input.

- :func:`published` hands out a unique temporary name in the target's folder (``tempfile``:
  two runs writing the same output never share one) and renames it over the target only when
  the block ends without error; on error only that temporary file is removed, so nothing a
  user owns is ever unlinked.
- :func:`check_output` runs before any work: the output is refused when it is (or is the same
  file as) one of the command's inputs, when its folder cannot be created or written, or when
  it is a directory.
- :func:`staging_dir` is the same for a set of files published together (a saved model);
  :func:`leftovers` finds what a killed writer left of either, by msync's own temporary names
  only (``.<stem>.<8 random characters>.partial<suffix>``), so that a command holding the
  directory's lock can remove exactly those.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from syncers.run.errors import InputError


# The process's umask, read once (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _affixes(path: Path) -> tuple[str, str]:
    return f".{path.stem}.", f".partial{path.suffix}"


@contextlib.contextmanager
def published(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it becomes ``path``."""
    path = Path(path)
    prefix, suffix = _affixes(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)      # mkstemp's 0600 would hide it from others
    except OSError:
        pass                                    # a file system without modes keeps its own
    finally:
        os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def staging_dir(path: str | os.PathLike) -> Path:
    """A fresh empty directory beside ``path``, named like :func:`published`'s files, to write
    files into before they are moved into ``path`` (the caller removes it)."""
    path = Path(path)
    prefix, suffix = _affixes(path)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=suffix))


# tempfile's names: the prefix, 8 characters of this alphabet, the suffix.
_RANDOM = "[a-z0-9_]{8}"


def leftovers(path: str | os.PathLike) -> list[Path]:
    """The temporary files and staging directories of ``path`` that a killed writer left
    (:func:`published`, :func:`staging_dir`): only names msync makes, nothing else."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix, suffix = _affixes(path)
    pattern = re.compile(re.escape(prefix) + _RANDOM + re.escape(suffix))
    return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                 flag: str) -> Path:
    """``path`` as a :class:`Path`, its folder created; refused (one-line :class:`InputError`)
    when it names an input, a directory, or a folder that cannot be written."""
    out = Path(path)
    for given in inputs:
        if given is not None and _same(out, Path(given)):
            raise InputError(out, f"{flag} would overwrite an input of this command; choose "
                                  "another output name")
    if out.is_dir():
        raise InputError(out, "is a directory; name the file to write")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out.parent, f"cannot create the folder ({err.strerror})") from None
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(out.parent, f"the folder for {flag} is not writable")
    return out
