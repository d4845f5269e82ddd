"""Files a command publishes: never half-written, never colliding, never over an input.

- :func:`published` hands out a unique temporary name in the target's folder (``tempfile``:
  two runs writing the same output never share one) and renames it over the target only when
  the block ends without error; on error only that temporary file is removed, so nothing a
  user owns is ever unlinked.
- :func:`check_output` runs before any work: the output is refused when it is (or is the same
  file as) one of the command's inputs, when its folder cannot be created or written, or when
  it is a directory.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from syncers.run.errors import InputError


@contextlib.contextmanager
def published(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it becomes ``path``."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.",
                                         suffix=f".partial{path.suffix}")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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
