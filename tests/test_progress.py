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


class _Clock:
    """A settable clock for tqdm (``tqdm.std.time``)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_and_what_is_left_count_only_the_work_after_the_first_unit(monkeypatch):
    """The first unit carries the compile: 100 s for it, then 1 s a unit, leaves 7 units of
    1 s each after the third, not 7 × 34 s."""
    clock = _Clock()
    monkeypatch.setattr("tqdm.std.time", clock)
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)
    stream = io.StringIO()
    with progress.bar(10, "render", "frame", stream=stream) as bar:
        clock.now += 100.0
        bar.update(1)
        first_line = stream.getvalue().splitlines()[-1]
        for _ in range(2):
            clock.now += 1.0
            bar.update(1)
        line = stream.getvalue().splitlines()[-1]
        for _ in range(7):
            clock.now += 1.0
            bar.update(1)
    assert "1/10" in first_line and "<?" in first_line    # no rate timed yet
    assert "3/10" in line and "01:42<00:07" in line        # elapsed all, remaining 7 × 1 s
    assert "1.00frame/s" in line
    # The closing line too: the rate of the work after the first unit (9 units in 9 s).
    assert "10/10 [01:49<00:00,  1.00frame/s]" in stream.getvalue().splitlines()[-1]


def test_a_bar_done_in_one_update_reports_its_overall_rate(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr("tqdm.std.time", clock)
    monkeypatch.setattr(progress, "LOG_SECONDS", 0.0)
    stream = io.StringIO()
    with progress.bar(150, "generate", "frame", stream=stream) as bar:
        clock.now += 5.0
        bar.update(150)
    assert "150/150 [00:05<00:00, 30.00frame/s]" in stream.getvalue().splitlines()[-1]


def test_a_bar_says_compiling_while_xla_compiles_before_its_first_unit(monkeypatch):
    """A real compile while the bar waits shows ``compiling`` (the beat redraws it); once the
    first unit is counted it is gone, and a bar under which nothing compiles never shows it."""
    import time

    import jax
    import jax.numpy as jnp

    monkeypatch.setattr(progress, "_CHECK_SECONDS", 0.02)
    stream = io.StringIO()
    with progress.bar(2, "render", "frame", stream=stream) as bar:
        # A program no test compiled before (the shape is this test's own).
        jax.jit(lambda x: jnp.cos(x) * 3.0)(jnp.ones((7, 13))).block_until_ready()
        time.sleep(0.3)
        bar.update(1)
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert any("0/2" in line and "compiling" in line for line in lines)
    assert "compiling" not in lines[-1]

    quiet = io.StringIO()
    with progress.bar(2, "render", "frame", stream=quiet) as bar:
        time.sleep(0.2)
        bar.update(2)
    assert "compiling" not in quiet.getvalue()


def test_a_terminal_bar_keeps_its_elapsed_time_running_while_compiling(monkeypatch):
    import time

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    counts = {"compiled": 0, "loaded": 0}
    monkeypatch.setattr(progress.compile_cache, "compile_counts", lambda: dict(counts))
    monkeypatch.setattr(progress, "_CHECK_SECONDS", 0.02)
    stream = Terminal()
    with progress.bar(2, "render", "frame", stream=stream) as bar:
        counts["compiled"] = 1                                 # XLA compiles under the bar
        time.sleep(0.5)
        redraws = stream.getvalue().count("compiling")
        bar.update(2)
    assert redraws >= 5
