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
