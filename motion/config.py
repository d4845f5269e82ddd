"""The generator stage's run configuration (``configs/generator*.yaml``), loaded with
``syncers.run.config.load(GeneratorRunConfig, path, overrides)``. Each module receives only its own
section: ``model`` → ``motion.generator``, ``discriminators`` → ``motion.discriminators``,
``loss`` → ``motion.losses``; ``optim``, ``train`` and ``data`` drive the training loop
(``motion.train``)."""
from __future__ import annotations

import dataclasses

from motion.discriminators import DiscriminatorConfig
from motion.generator import GeneratorConfig
from motion.losses import LossConfig
from syncers.data.windows import Augment
from syncers.run.config import count, non_negative, positive, ranged


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam (β1 = 0, β2 = 0.999) for G and D, both ×``decay_factor`` after ``decay_step``.
    ``eps`` is Adam's ε (optax's default): a gradient entry much smaller than it gets a step
    proportional to itself rather than ±lr."""
    lr_g: float = positive(2e-5)
    lr_d: float = positive(1e-5)
    b1: float = ranged(0.0, ge=0, lt=1)
    b2: float = ranged(0.999, ge=0, lt=1)
    eps: float = positive(1e-8)
    decay_step: int = non_negative(70000)
    decay_factor: float = positive(0.1)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = count(75000)
    batch_size: int = count(8)
    seq_frames: int = count(40)    # generated frames per training sequence (after obs_len)
    # Frames G rolls out on its own (no gradient) before the scored sequence, which then starts
    # from G's own state and history, as at inference after a while (docs/design.md, "Long
    # generation"); 0 = the paper (scored frames follow the observed ones).
    burn_in_frames: int = non_negative(0)
    checkpoint_every: int = count(5000)
    log_every: int = count(50)
    validate_every: int = count(1000)
    val_batch_size: int = count(16)   # the fixed validation batch (val split, no augmentation)
    max_to_keep: int = count(2)
    seed: int = non_negative(0)
    # A saved generator whose parameters G starts from (D fresh; None = G initialised by the
    # seed): a centred model's are a start for its low-latency twin (``model.fpn_lookahead``,
    # the same parameter shapes). Set by ``msync train generator --init-from``.
    init_from: str | None = None


@dataclasses.dataclass(frozen=True)
class DataConfig:
    augment: Augment = dataclasses.field(default_factory=Augment)


@dataclasses.dataclass(frozen=True)
class GeneratorRunConfig:
    model: GeneratorConfig = dataclasses.field(default_factory=GeneratorConfig)
    discriminators: DiscriminatorConfig = dataclasses.field(default_factory=DiscriminatorConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
