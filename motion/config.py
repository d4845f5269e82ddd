"""The generator stage's run configuration (``configs/generator*.yaml``), loaded with
``syncers.config.load(GeneratorRunConfig, path, overrides)``. Each module receives only its own
section: ``model`` → ``motion.generator``, ``discriminators`` → ``motion.discriminators``,
``loss`` → ``motion.losses`` (training keys are added with the training loop)."""
from __future__ import annotations

import dataclasses

from motion.discriminators import DiscriminatorConfig
from motion.generator import GeneratorConfig
from motion.losses import LossConfig


@dataclasses.dataclass(frozen=True)
class GeneratorRunConfig:
    model: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    discriminators: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
