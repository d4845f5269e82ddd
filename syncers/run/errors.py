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


def warn(path: str | os.PathLike | None, message: str) -> None:
    """One line ``msync: warning: <path>: <message>`` on stderr (docs/design.md, "CLI
    contract"): something the user should know, after which msync goes on."""
    import sys
    where = "" if path is None else f"{os.fspath(path)}: "
    print(f"msync: warning: {where}{message}", file=sys.stderr, flush=True)


def one_line(err: Exception) -> str:
    """``"<ExceptionType>: <first line of its message>"`` (at most 200 characters of it), for
    wrapping a library's exception into an :class:`InputError`."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def optional_import(module: str, purpose: str, install: str = "pip install 'msync[torch]'"):
    """Import ``module``, or raise a one-line :class:`InputError` saying how to install it
    (``install``). By default the module is from the ``msync[torch]`` extra: only the checkpoint
    converter, the parity check and face-alignment landmarks need it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is None or err.name.split(".")[0] != top:
            raise                      # the package is there but broken: a real error
        left_out = ", which the core install leaves out" if "msync[torch]" in install else \
            ", which is not installed"
        raise InputError(None, f"{purpose} needs {top}{left_out}: {install}") from None
