"""The released MS-Sync generator as an msync model: its parameters (``motion.official.layout``)
and its config. ``motion.saved_model`` loads and saves it (``arch: ms-sync-official``);
``motion.generate.generate`` runs it through ``motion.official.protocol``."""
from __future__ import annotations

from typing import Any, ClassVar

import flax.struct

from motion.official.config import ARCH, OfficialConfig


@flax.struct.dataclass
class OfficialModel:
    """Parameters (the tree of ``motion.official.layout.template``) and the static config."""
    params: Any
    config: OfficialConfig = flax.struct.field(pytree_node=False)
    arch: ClassVar[str] = ARCH
