"""How long ``msync ui`` takes to serve: from launching the command to its "serving" line, the
page answering an HTTP request; prints one JSON object (several runs, with the machine's load).

    .venv/bin/python bench/bench_ui_start.py [--runs 3] [--model RUN]

The target is under 15 s on a 2-core CPU (docs/design.md, "Streaming and the web page").
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_seconds(model: str | None) -> dict:
    port = _free_port()
    argv = [sys.executable, "-m", "motion.app.cli", "ui", "--port", str(port)]
    if model:
        argv += ["--model", model]
    started = time.perf_counter()
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        serving = time.perf_counter() - started
        if not line.startswith("msync ui: serving"):
            raise SystemExit(f"msync ui did not start: {line}{process.stderr.read()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
            response.read()
        return {"serving_s": round(serving, 2),
                "first_page_s": round(time.perf_counter() - started, 2)}
    finally:
        process.terminate()
        process.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    load_before = os.getloadavg()
    runs = [start_seconds(args.model) for _ in range(args.runs)]
    print(json.dumps({"runs": runs, "target_s": 15.0,
                      "median_first_page_s":
                          sorted(r["first_page_s"] for r in runs)[len(runs) // 2],
                      "loadavg_before": [round(v, 2) for v in load_before],
                      "loadavg_after": [round(v, 2) for v in os.getloadavg()],
                      "cpu_count": os.cpu_count()}, indent=1))


if __name__ == "__main__":
    main()
