"""``msync data prepare``: the command over ``syncers.data.prepare`` (real talking-head videos →
an msync dataset); it supplies FOMM's keypoint detector, which lives in the renderer's package."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from render.fomm import load as load_fomm
from render.keypoints import join
from syncers.data.prepare import PrepareOptions, prepare_dataset


def fomm_detector(checkpoint: str, config: str | None) -> Callable[[np.ndarray], np.ndarray]:
    """FOMM's keypoint detector from ``checkpoint``: frames ``[T, S, S, 3]`` in [0, 1] →
    keypoints ``[T, 10, 6]``."""
    fomm = load_fomm(checkpoint, config)
    return lambda pixels: join(fomm.keypoints(pixels))


def prepare_command(args: Any) -> None:
    options = PrepareOptions(fomm_checkpoint=args.fomm_checkpoint,
                             fomm_config=args.fomm_config, landmarker=args.landmarker,
                             flip=args.flip, split_by=args.split_by, split=args.split,
                             speakers=args.speakers, shard=args.shard,
                             min_seconds=args.min_seconds,
                             fomm_detector=fomm_detector)
    report = prepare_dataset(args.videos, args.out, options, workers=args.workers)
    skipped = report["skipped"]
    print(f"prepared {len(report['prepared'])} clip(s) ({report['already_done']} already done, "
          f"{len(report['skipped_before'])} refused before), skipped {len(skipped)}, splits "
          f"{report['clips']}, {report['frames']} frames in {report['seconds']} s "
          f"({report['frames_per_second']} frames/s) → {args.out}")
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
