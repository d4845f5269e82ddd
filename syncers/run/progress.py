"""Progress of long work: a bar on a terminal, a plain line every few seconds in a log.

tqdm redraws one line with carriage returns, which a log file or a pipe shows as nothing until
the end (``msync demo 2>&1 | tee log`` sat silent for minutes). :func:`bar` gives tqdm's bar when
stderr is a terminal; otherwise the same bar, refreshed at most every ``LOG_SECONDS`` seconds
and written as whole lines (count, rate, elapsed and remaining time), so a log shows the work
moving and what is left; while no bar writes for ``LOG_SECONDS`` (a long compile, work between
bars) an open bar writes its line again with the elapsed time, so a log is never quiet longer.

Honest estimates (docs/design.md, "Warm starts"): a bar's first unit of work usually carries
the compilation of the programs that do it (tens of seconds on a CPU, then milliseconds per
unit), so until that unit is done a bar says ``compiling`` once it has seen XLA compile
(:func:`syncers.run.compile_cache.compile_counts`; a warm start that loads its programs from
the cache shows nothing), and its rate and remaining time count only the work done after the
first unit, never the compile. Its elapsed time stays the whole time since it opened.
"""
from __future__ import annotations

import io
import re
import sys
import threading
import time

from tqdm import tqdm

from syncers.run import compile_cache

LOG_SECONDS = 20.0
# How often an open bar checks whether XLA has started compiling under it (_Bar) and a log bar
# whether the log has gone quiet (_LogBar).
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


class _Bar(tqdm):
    """A bar in two phases: until the first unit is counted it shows ``compiling`` when XLA
    compiled anything since it opened, and no rate; from then on its rate and remaining time
    are those of the work after the first unit (tqdm's smoothed rate, restarted there). On a
    terminal the compiling bar is redrawn every ``_CHECK_SECONDS``, so its elapsed time runs."""

    _redraw_while_compiling = True

    def __init__(self, *args, **kwargs):
        # Set before tqdm's __init__, which draws the bar (format_dict reads them).
        self._compiled_at_open = compile_cache.compile_counts()["compiled"]
        self._compiling_shown = False
        self._first_unit_t: float | None = None     # when the first unit was counted
        self._first_unit_n = 0                      # the count then
        self._closed = threading.Event()
        super().__init__(*args, **kwargs)
        if not self.disable:
            threading.Thread(target=self._watch, daemon=True).start()

    def _compiling(self) -> bool:
        return compile_cache.compile_counts()["compiled"] > self._compiled_at_open

    def _watch(self) -> None:
        while not self._closed.wait(_CHECK_SECONDS):
            self._beat()

    def _beat(self) -> None:
        """Every ``_CHECK_SECONDS`` while open: show ``compiling`` as soon as it is true."""
        if self._first_unit_t is None and (self._redraw_while_compiling
                                           or not self._compiling_shown) and self._compiling():
            self._compiling_shown = True
            self.refresh()

    def update(self, n: int | float = 1) -> bool | None:
        if self._first_unit_t is not None or self.disable or not n:
            return super().update(n)
        # The first unit, counted past tqdm's update: its duration (the compile) never reaches
        # the smoothed rate, which tqdm feeds there, and the next interval starts now.
        now = self._time()
        self.n += n
        self._first_unit_t, self._first_unit_n = now, self.n
        self.last_print_t, self.last_print_n = now, self.n
        if self.total is None or self.n < self.total:       # a finished bar's close draws it
            self.refresh(lock_args=self.lock_args)
        return True

    @property
    def format_dict(self) -> dict:
        meter = super().format_dict
        if self._first_unit_t is None:
            if self._compiling():
                meter["postfix"] = "compiling" + (f", {meter['postfix']}"
                                                  if meter.get("postfix") else "")
            return meter
        done = self.n - self._first_unit_n
        if meter.get("rate") is None:
            working = self._time() - self._first_unit_t
            if done > 0 and working > 0:
                meter["rate"] = done / working
            elif self.total is None or self.n < self.total:
                # Nothing timed after the first unit yet: no rate rather than one that
                # counts the compile (tqdm's fallback, count over elapsed time).
                meter["initial"] = self.n
        return meter

    def close(self) -> None:
        self._closed.set()
        super().close()


class _LogBar(_Bar):
    """A log bar that also writes its line when no log bar has written one for ``LOG_SECONDS``
    although nothing was counted: a step that takes long (the first, which compiles) or work
    between bars (loading, scoring) would otherwise leave a log silent for minutes. The line's
    elapsed time shows the work is alive."""

    _redraw_while_compiling = False      # a line when compiling starts, then the quiet-log beat

    def _beat(self) -> None:
        super()._beat()
        with _beat_lock:
            if time.monotonic() - _last_line[0] >= LOG_SECONDS:
                self.refresh()


def bar(total: int | None, desc: str, unit: str = "it", initial: int = 0,
        disable: bool = False, stream=None) -> tqdm:
    """A tqdm bar on ``stream`` (stderr): redrawn on a terminal, a line every ``LOG_SECONDS``
    otherwise. ``disable`` hides it (a non-primary process, a caller's ``progress=False``)."""
    stream = sys.stderr if stream is None else stream
    common = dict(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    if hasattr(stream, "isatty") and stream.isatty():
        return _Bar(file=stream, dynamic_ncols=True, **common)
    return _LogBar(file=_Lines(stream), mininterval=LOG_SECONDS, maxinterval=LOG_SECONDS,
                   position=0,      # nested bars write plain lines, not cursor moves
                   ncols=100, ascii=True, **common)
