"""``msync data synth``: a phantom corpus with known speech/motion coupling
(``syncers.data.phantom.corpus``)."""
from __future__ import annotations

from typing import Any

from syncers.data.phantom.corpus import synth_corpus


def synth_command(args: Any) -> None:
    """``msync data synth``: see :func:`synth_corpus`; prints a one-line summary."""
    summary = synth_corpus(args.out, clips=args.clips, seconds=args.seconds, seed=args.seed,
                           coupling=args.coupling, features=args.features)
    s = summary["splits"]
    print(f"msync data synth: {summary['clips']} clips, {summary['seconds']:.1f} s of speech "
          f"(train {s['train']} / val {s['val']} / test {s['test']}) -> {summary['out']} "
          f"in {summary['wall_s']:.1f} s")
