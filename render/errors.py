"""Bad-input error of the renderer (``render`` imports nothing of msync, so it has its own).

The CLI treats it exactly like ``syncers.run.errors.InputError``: one line ``path: problem``,
exit 2.
"""
from __future__ import annotations

import os


class RenderInputError(Exception):
    """Bad user input to the renderer. ``str(err)`` is ``"<path>: <problem>"``."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")
