"""Progress of long work: a bar on a terminal, a plain line every few seconds in a log.

tqdm redraws one line with carriage returns, which a log file or a pipe shows as nothing until
the end (``msync demo 2>&1 | tee log`` sat silent for minutes). :func:`bar` gives tqdm's bar when
stderr is a terminal; otherwise the same bar, refreshed at most every ``LOG_SECONDS`` seconds
and written as whole lines (count, rate, elapsed and remaining time), so a log shows the work
moving and what is left; while no bar writes for ``LOG_SECONDS`` (a long compile, work between
bars) an open bar writes its line again with the elapsed time, so a log is never quiet longer.
"""
from __future__ import annotations

import io
import re
import sys
import threading
import time

from tqdm import tqdm

LOG_SECONDS = 20.0
# How often a log bar checks whether the log has gone quiet (see _LogBar).
_CHECK_SECONDS = 1.0
_last_line = [time.monotonic()]      # when any log bar last wrote a line
_beat_lock = threading.Lock()        # one quiet-log line at a time, however many bars are open
# tqdm moves the cursor between nested bars; a log has no cursor.
_CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _Lines(io.TextIOBase):
    """A stream that turns tqdm's carriage-return redraws into separate lines."""

    def __init__(self, stream):
        self.stream = stream
        self._last = ""

    def write(self, text: str) -> int:
        for part in _CURSOR_MOVES.sub("", text).replace("\r", "\n").split("\n"):
            part = part.strip()
            if part and part != self._last:
                self.stream.write(part + "\n")
                self.stream.flush()
                self._last = part
                _last_line[0] = time.monotonic()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _LogBar(tqdm):
    """A log bar that also writes its line when no log bar has written one for ``LOG_SECONDS``
    although nothing was counted: a step that takes long (the first, which compiles) or work
    between bars (loading, scoring) would otherwise leave a log silent for minutes. The line's
    elapsed time shows the work is alive."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._closed = threading.Event()
        if not self.disable:
            threading.Thread(target=self._beat, daemon=True).start()

    def _beat(self) -> None:
        while not self._closed.wait(_CHECK_SECONDS):
            with _beat_lock:
                if time.monotonic() - _last_line[0] >= LOG_SECONDS:
                    self.refresh()

    def close(self) -> None:
        if hasattr(self, "_closed"):
            self._closed.set()
        super().close()


def bar(total: int | None, desc: str, unit: str = "it", initial: int = 0,
        disable: bool = False, stream=None) -> tqdm:
    """A tqdm bar on ``stream`` (stderr): redrawn on a terminal, a line every ``LOG_SECONDS``
    otherwise. ``disable`` hides it (a non-primary process, a caller's ``progress=False``)."""
    stream = sys.stderr if stream is None else stream
    common = dict(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    if hasattr(stream, "isatty") and stream.isatty():
        return tqdm(file=stream, dynamic_ncols=True, **common)
    return _LogBar(file=_Lines(stream), mininterval=LOG_SECONDS, maxinterval=LOG_SECONDS,
                   position=0,      # nested bars write plain lines, not cursor moves
                   ncols=100, ascii=True, **common)
