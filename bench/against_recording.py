"""A generator's mouth against the recording on a prepared ``landmarks-v1`` dataset, without a
syncer run (``motion.against_recording``; ``msync evaluate --model --against`` writes the same
section beside the syncer metrics). Writes ``OUT/against_recording.json`` (per clip and the
summary) and ``OUT/against_recording.md`` (the tables) and prints the tables:

    .venv/bin/python -m bench.against_recording --data DS [--model motion/assets/demo_model]
        [--split test] [--against rendered|keypoints] --out DIR
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from motion import against_recording, talking_head


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default=None, help="default: the bundled demo model")
    p.add_argument("--split", default="test")
    p.add_argument("--against", choices=against_recording.LEVELS[1:], default="rendered")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    started = time.perf_counter()
    result = against_recording.evaluate(talking_head.load(args.model), args.data, args.split,
                                        args.against)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["model"] = args.model or str(talking_head.DEMO_MODEL_DIR)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "against_recording.json").write_text(
        json.dumps(against_recording.json_ready(result), indent=1, allow_nan=False) + "\n")
    text = against_recording.markdown(result)
    (out / "against_recording.md").write_text(text)
    print(text + f"\n{result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
