"""Files a command publishes: never half-written, never colliding, never over an input.

- :func:`published` hands out a unique temporary name in the target's folder (``tempfile``:
  two runs writing the same output never share one) and renames it over the target only when
  the block ends without error; on error only that temporary file is removed, so nothing a
  user owns is ever unlinked.
- :func:`check_output` runs before any work: the output is refused when it is (or is the same
  file as) one of the command's inputs, when its folder cannot be created or written (a file is
  made there and removed: permission bits say nothing about ``/proc`` or a read-only mount), or
  when it is a directory. It also removes the temporary files a killed run left for the same
  output (:func:`remove_stale`).
- :func:`interrupt_on_sigterm`: SIGTERM then ends msync as Ctrl-C does, by an exception, so
  every :func:`published` block removes its temporary file and every encoder child is stopped
  (``syncers.data.video``). SIGKILL cannot be caught; what it leaves, the next run removes.
- A temporary file of :func:`published` is locked (``flock``) by the process writing it for as
  long as it lives; the kernel drops the lock when that process dies, however it dies, so an
  unlocked temporary file is a dead writer's and :func:`remove_stale` removes exactly those —
  never one that a live run, this one or another, is still writing.
- :func:`staging_dir` is the same for a set of files published together (a saved model);
  :func:`leftovers` finds what a killed writer left of either, by msync's own temporary names
  only (``.<stem>.<8 random characters>.partial<suffix>``), so that a command holding the
  directory's lock can remove exactly those.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import signal
import tempfile
import threading
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
    """Yield a fresh temporary path beside ``path``, locked while the block runs; on success it
    becomes ``path``. What killed runs left for ``path`` is removed first (:func:`remove_stale`)."""
    path = Path(path)
    remove_stale(path)
    prefix, suffix = _affixes(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)      # held until this process ends or closes it
        try:
            os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide it from others
        except OSError:
            pass                                # a file system without modes keeps its own
        temporary = Path(temporary)
        try:
            yield temporary
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    finally:
        os.close(handle)


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of ``path`` (:func:`leftovers`) that no live process holds
    locked, i.e. that a killed run left; returns them. Staging directories are left to the
    commands that own their folder (``syncers.run.rundir``)."""
    removed = []
    for left in leftovers(path):
        try:
            handle = os.open(left, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue                            # a directory, a link, or gone meanwhile
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            continue                            # a live writer's
        else:
            if left.is_file():
                left.unlink(missing_ok=True)
                removed.append(left)
        finally:
            os.close(handle)
    return removed


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
    try:
        return os.path.samefile(a, b)
    except OSError:                             # either missing, or a link loop
        return os.path.realpath(a) == os.path.realpath(b)


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
    try:
        probe, probe_path = tempfile.mkstemp(dir=out.parent, prefix=_affixes(out)[0],
                                             suffix=".probe")
    except OSError as err:
        raise InputError(out.parent, f"the folder for {flag} is not writable "
                                     f"({err.strerror})") from None
    os.close(probe)
    os.unlink(probe_path)
    remove_stale(out)
    return out


def interrupt_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`KeyboardInterrupt` in the main thread (where Python
    runs signal handlers), so the clean-up of every ``finally`` runs; elsewhere a no-op."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
