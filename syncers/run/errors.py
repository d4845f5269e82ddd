"""The error users see for bad input.

Anything a user can get wrong (a missing file, a malformed clip, an unknown config key) raises
:class:`InputError` naming the file; the CLI prints it as one line ``path: problem`` and exits
2. Every other exception is a bug and exits 1 (with a traceback only under ``--debug``).
"""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad user input. ``str(err)`` is the one-line message ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


def one_line(err: Exception) -> str:
    """``"<ExceptionType>: <first line of its message>"`` (at most 200 characters of it), for
    wrapping a library's exception into an :class:`InputError`."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
