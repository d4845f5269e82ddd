"""Progress in a log: whole lines with counts and an estimate, not carriage-return redraws."""
from __future__ import annotations

import io

from syncers.run import progress


def test_a_log_gets_whole_lines_with_the_count_and_what_is_left(monkeypatch):
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)          # a line at every update
    stream = io.StringIO()
    with progress.bar(4, "train", "step", stream=stream) as bar:
        for _ in range(4):
            bar.update(1)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) >= 2 and lines[-1].startswith("train: 100%")
    assert any("2/4" in line for line in lines) and all("step" in line for line in lines[1:])
    assert "<" in lines[1]                                      # elapsed<remaining


def test_a_disabled_bar_writes_nothing():
    stream = io.StringIO()
    with progress.bar(3, "quiet", disable=True, stream=stream) as bar:
        bar.update(3)
    assert stream.getvalue() == ""


def test_a_terminal_keeps_the_redrawn_bar():
    class Terminal(io.StringIO):
        def isatty(self):
            return True
    stream = Terminal()
    with progress.bar(2, "tty", stream=stream) as bar:
        bar.update(2)
    assert "\r" in stream.getvalue()


def test_a_quiet_log_gets_a_line_with_the_elapsed_time_though_nothing_was_counted(monkeypatch):
    """A long first step (compiling) or work between bars must not leave a piped log silent:
    an open bar writes its line again once no bar has written for LOG_SECONDS."""
    import time

    monkeypatch.setattr(progress, "LOG_SECONDS", 0.3)
    monkeypatch.setattr(progress, "_CHECK_SECONDS", 0.05)
    stream = io.StringIO()
    with progress.bar(2, "outer", "command", stream=stream):
        with progress.bar(3, "inner", "step", stream=stream):
            time.sleep(1.0)                                    # nothing counted
    lines = stream.getvalue().splitlines()
    assert len([line for line in lines if "0/" in line]) >= 4  # two at the start, then beats
    assert "\x1b" not in stream.getvalue()                     # nested bars: no cursor moves
