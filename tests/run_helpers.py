"""Processes around a run for the concurrency and fault tests: another process holding a run's
lock, the line a refused command prints, SIGKILL."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


_HOLD = """
import sys, time
sys.path.insert(0, {repo!r})
from syncers.run.rundir import locked
with locked({path!r}):
    print("held", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def held_by_another_process(directory: Path):
    """``directory``'s run lock held by another (plain Python) process for the block; yields
    its pid. The holder is SIGKILLed at the end."""
    process = subprocess.Popen([sys.executable, "-c", _HOLD.format(repo=str(REPO),
                                                                   path=str(directory))],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process.pid
    finally:
        kill(process)


def refused_as_in_use(err: str, directory: Path, pid: int) -> bool:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return lines == [f"msync: error: {directory}: is in use by another msync process (pid "
                     f"{pid}); wait for it to end, or use another directory"]
