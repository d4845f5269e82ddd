"""``msync train syncers`` (stage 1, ``syncers.train``) and ``msync train generator`` (stage 2,
``motion.train``): a YAML from ``configs/`` plus ``--set`` overrides, then the trainer."""
from __future__ import annotations

import dataclasses

from motion import train as generator_train
from motion.config import GeneratorRunConfig
from syncers import train as syncer_train
from syncers.run import config as config_lib
from syncers.train import SyncersConfig


def train_syncers_command(args) -> None:
    """``msync train syncers --data DIR --out RUN [--config YAML] [--set k=v] [--levels]
    [--distributed]`` (``motion.app.cli`` has started ``jax.distributed`` for ``--distributed``)."""
    overrides = list(args.overrides or [])
    if args.levels:
        overrides.append(f"train.levels=[{','.join(map(str, args.levels))}]")
    config = config_lib.load(SyncersConfig, args.config or syncer_train.DEFAULT_CONFIG, overrides)
    # Set directly, not as a --set value: a path is not YAML (an escaped emoji would come back
    # as two surrogates that no file system accepts).
    config = dataclasses.replace(config, data_root=str(args.data))
    syncer_train.train_and_evaluate(config, args.out)


def train_generator_command(args) -> None:
    """``msync train generator --data DIR --syncers RUN --out RUN [--config YAML] [--set k=v]``."""
    config = config_lib.load(GeneratorRunConfig, args.config or generator_train.DEFAULT_CONFIG,
                             list(args.overrides or []))
    generator_train.train(config, args.data, args.syncers, args.out)
