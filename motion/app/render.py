"""``msync render convert`` (an official FOMM checkpoint → orbax weights, ``render.fomm.convert``)
and ``msync render parity`` (the Flax FOMM on inputs from an npz, ``render.fomm.parity``)."""
from __future__ import annotations

import numpy as np

from render.fomm.convert import convert
from render.fomm.model import load
from render.fomm.parity import read_inputs, run_parity
from syncers.run.outputs import check_output, published


def convert_command(args) -> None:
    """``msync render convert --checkpoint X.pth.tar --config Y.yaml --out DIR``."""
    path = convert(args.checkpoint, args.config, args.out)
    print(f"wrote {path}")


def parity_command(args) -> None:
    """``msync render parity --checkpoint C --inputs in.npz --out out.npz [--config Y]
    [--grid-align-corners true|false]``. ``--out`` naming an input (``--inputs``, the
    checkpoint, the config) is refused before any work; it is written under a temporary name
    and renamed."""
    out = check_output(args.out, (args.inputs, args.checkpoint, args.config), "--out")
    model = load(args.checkpoint, args.config,
                 grid_align_corners=str(args.grid_align_corners).lower() == "true")
    outputs = run_parity(model, read_inputs(args.inputs))
    with published(out) as partial, open(partial, "wb") as handle:
        np.savez(handle, **outputs)
    print(f"wrote {out}")
