"""Progress of long work: a bar on a terminal, a plain line every few seconds in a log.

tqdm redraws one line with carriage returns, which a log file or a pipe shows as nothing until
the end (``msync demo 2>&1 | tee log`` sat silent for minutes). :func:`bar` gives tqdm's bar when
stderr is a terminal; otherwise the same bar, refreshed at most every ``LOG_SECONDS`` seconds
and written as whole lines (count, rate, elapsed and remaining time), so a log shows the work
moving and what is left.
"""
from __future__ import annotations

import io
import sys

from tqdm import tqdm

LOG_SECONDS = 20.0


class _Lines(io.TextIOBase):
    """A stream that turns tqdm's carriage-return redraws into separate lines."""

    def __init__(self, stream):
        self.stream = stream
        self._last = ""

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            part = part.strip()
            if part and part != self._last:
                self.stream.write(part + "\n")
                self.stream.flush()
                self._last = part
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def bar(total: int | None, desc: str, unit: str = "it", initial: int = 0,
        disable: bool = False, stream=None) -> tqdm:
    """A tqdm bar on ``stream`` (stderr): redrawn on a terminal, a line every ``LOG_SECONDS``
    otherwise. ``disable`` hides it (a non-primary process, a caller's ``progress=False``)."""
    stream = sys.stderr if stream is None else stream
    common = dict(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    if hasattr(stream, "isatty") and stream.isatty():
        return tqdm(file=stream, dynamic_ncols=True, **common)
    return tqdm(file=_Lines(stream), mininterval=LOG_SECONDS, maxinterval=LOG_SECONDS,
                ncols=100, ascii=True, **common)
