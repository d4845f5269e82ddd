"""``msync motion convert`` (the released MS-Sync generator → an msync saved model,
``motion.official.convert``) and ``msync motion parity`` (the converted model on inputs from an
npz, ``motion.official.parity``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from motion.official.convert import convert
from motion.official.model import OfficialModel
from motion.official.parity import read_inputs, run_parity
from motion.saved_model import load_model
from syncers.run.errors import InputError
from syncers.run.outputs import check_output, published


def convert_command(args) -> None:
    """``msync motion convert --checkpoint DIR --out MODEL``."""
    path = convert(args.checkpoint, args.out)
    print(f"msync motion convert: {args.checkpoint} -> {path} (arch ms-sync-official, "
          f"keypoint space fomm-vox256, official audio features)")


def parity_command(args) -> None:
    """``msync motion parity --model MODEL --inputs IN.npz --out OUT.npz``."""
    inputs = Path(args.inputs)
    out = check_output(args.out, (inputs,), "--out")
    model, _ = load_model(args.model)
    if not isinstance(model, OfficialModel):
        raise InputError(args.model, "not a converted MS-Sync release (arch ms-sync-official); "
                                     "convert one with `msync motion convert`")
    outputs = run_parity(model, read_inputs(inputs), inputs)
    with published(out) as partial, open(partial, "wb") as handle:
        np.savez(handle, **outputs)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in outputs.items())
    print(f"msync motion parity: {shapes} -> {out}")
