"""Cold against warm starts of the README's first command (``msync generate --out hello.mp4``):
the first run into an empty compilation cache, then the same command again (docs/design.md,
"Warm starts"). Prints one JSON object: per run the total ``msync generate`` reports, the wall
and CPU seconds of the process, whether a progress bar said ``compiling``, and the warm/cold
ratios; pairs alternate (cold, warm, cold, warm, ...) so the machine's drift hits both, and
medians are reported, with the machine's load before and after (these 2 cores are shared).

    .venv/bin/python -m bench.bench_warm_start [--pairs 2]

The target is a warm total under a third of the cold one, ``compiling`` shown only when cold.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TOTAL = re.compile(r"total (\d+(?:\.\d+)?) s")


def run_once(cache: Path, out: Path) -> dict:
    """One ``msync generate`` with its cache under ``cache``: reported total, wall, CPU."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("MSYNC_NO_COMPILE_CACHE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "motion.app.cli", "generate", "--out", str(out)],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"msync generate failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = done.stdout.strip().splitlines()[-1]
    total = _TOTAL.search(summary)
    return {"reported_total_s": float(total.group(1)) if total else None,
            "wall_s": round(wall, 2),
            "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 2),
            "compiling_shown": "compiling" in done.stderr,
            "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="cold/warm pairs (default 2)")
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1; got {args.pairs}")
    load_before = os.getloadavg()
    cold, warm = [], []
    with tempfile.TemporaryDirectory(prefix="msync-warm-") as scratch:
        for pair in range(args.pairs):
            cache = Path(scratch) / f"cache{pair}"          # empty: a cold start
            cold.append(run_once(cache, Path(scratch) / "hello.mp4"))
            warm.append(run_once(cache, Path(scratch) / "hello.mp4"))
    median = lambda runs, key: statistics.median(r[key] for r in runs)
    ratios = {key: round(median(warm, key) / median(cold, key), 3)
              for key in ("reported_total_s", "wall_s", "cpu_s")}
    print(json.dumps({
        "command": "msync generate --out hello.mp4 (bundled photo and speech)",
        "cold": cold, "warm": warm,
        "median": {kind: {key: median(runs, key) for key in ("reported_total_s", "wall_s",
                                                            "cpu_s")}
                   for kind, runs in (("cold", cold), ("warm", warm))},
        "warm_over_cold": ratios,
        "target": {"reported_total_ratio_below": round(1 / 3, 3),
                   "met": ratios["reported_total_s"] < 1 / 3
                   and all(r["compiling_shown"] for r in cold)
                   and not any(r["compiling_shown"] for r in warm)},
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
    }, indent=1))


if __name__ == "__main__":
    main()
