"""The released MS-Sync generator → an msync saved model (``msync motion convert``; docs/design.md,
"Released MS-Sync model").

The release is a directory with ``args`` (the training run's arguments, JSON) and
``model_chkpt.pt`` (``torch.save`` of ``{'checkpoints': DynamicalModel.state_dict(), ...}``).
The checkpoint is opened with ``torch.load(weights_only=True)``: it is a pickle, and unrestricted
unpickling runs whatever code the file names — a file that needs more than tensors and plain
containers (the trainer's full saves also pickle its data loaders) is refused. Besides
``checkpoints`` the file may hold what the official trainer saves with it (``steps``, ``epoch``,
the discriminator, optimizers, schedulers, loaders), which is ignored; anything else is refused.
The state dict must match ``args`` exactly (the official ``load_state_dict`` is strict): every
tensor present, none unknown, every shape right; each problem is named.

The saved model (``motion.saved_model``) records ``arch: ms-sync-official``, the config, the
keypoint space ``fomm-vox256`` (the model moves FOMM vox keypoints), the official feature
front-end and the source files' SHA-256; loading it needs no torch.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from motion.official.config import OfficialConfig, from_args
from motion.official.layout import nest, specs, to_msync
from motion.official.model import OfficialModel
from motion.saved_model import save_model
from render.fomm.convert import _unpickling_reason
from render.fomm.store import sha256
from syncers.data.features import feature_config
from syncers.data.layout import FOMM_SPACE
from syncers.run.errors import InputError, optional_import

ARGS = "args"
CHECKPOINT = "model_chkpt.pt"
STATE_DICT = "checkpoints"
# What nets/trainer.py's save() writes beside the generator's state dict.
TRAINING_ONLY = frozenset({"steps", "epoch", "dis_checkpoints", "dis_optimizer", "gen_optimizer",
                           "dis_scheduler", "gen_scheduler", "loader", "val_loader"})
MAX_PROBLEMS = 6                # named in the one-line error; the rest counted


def read_args(directory: str | os.PathLike) -> OfficialConfig:
    """The config of ``directory/args`` (``motion.official.config.from_args``)."""
    path = Path(directory) / ARGS
    if not path.is_file():
        raise InputError(path, "missing: a released model directory holds `args` (the training "
                               "arguments, JSON) beside model_chkpt.pt")
    try:
        args = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not JSON ({err})") from None
    return from_args(args, path)


def read_state_dict(directory: str | os.PathLike) -> dict[str, np.ndarray]:
    """The generator's state dict of ``directory/model_chkpt.pt`` as numpy arrays."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        raise InputError(path, "missing: a released model directory holds model_chkpt.pt")
    # torch is an optional dependency (msync[torch]): only conversion reads PyTorch files.
    torch = optional_import("torch", "converting the released MS-Sync checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise InputError(path, "refused: its pickle references code or objects other than "
                               "tensors and plain containers, which this loader never executes "
                               f"({_unpickling_reason(err)}); if you trust the file, save its "
                               "'checkpoints' entry alone and convert that") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as err:
        raise InputError(path, "not a readable PyTorch checkpoint "
                               f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
                         ) from None
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(STATE_DICT), Mapping):
        raise InputError(path, f"not a released MS-Sync checkpoint: expected a dict with the "
                               f"generator's state dict under {STATE_DICT!r}")
    unknown = sorted(str(k) for k in checkpoint if k != STATE_DICT and k not in TRAINING_ONLY)
    if unknown:
        raise InputError(path, f"unexpected entries {unknown} beside {STATE_DICT!r} (known: the "
                               "trainer's steps, epoch, discriminator, optimizers, schedulers, "
                               "loaders)")
    state = {}
    for key, value in checkpoint[STATE_DICT].items():
        if not hasattr(value, "detach"):
            raise InputError(path, f"{STATE_DICT}[{key!r}] is not a tensor")
        state[str(key)] = value.detach().cpu().float().numpy()
    return state


def convert_state_dict(state: Mapping[str, Any], config: OfficialConfig,
                       source: str | os.PathLike | None = None) -> dict:
    """The official state dict → msync's parameter tree (float32 numpy leaves); one
    :class:`InputError` naming the missing, unknown and misshaped tensors."""
    problems, leaves = [], []
    expected = specs(config)
    for spec in expected:
        if spec.key not in state:
            problems.append(f"missing tensor {spec.key}")
            continue
        tensor = np.asarray(state[spec.key])
        if tuple(tensor.shape) != spec.torch_shape:
            problems.append(f"tensor {spec.key} has shape {tuple(tensor.shape)}, expected "
                            f"{spec.torch_shape}")
            continue
        if not np.all(np.isfinite(tensor)):
            problems.append(f"tensor {spec.key} is not finite")
            continue
        leaves.append((spec.path, to_msync(spec, tensor)))
    known = {spec.key for spec in expected}
    problems += [f"unknown tensor {k}" for k in sorted(set(state) - known)]
    if problems:
        more = len(problems) - MAX_PROBLEMS
        raise InputError(source, "; ".join(problems[:MAX_PROBLEMS])
                         + (f"; and {more} more" if more > 0 else "")
                         + " (does args match the checkpoint?)")
    return nest(leaves)


def load_release(directory: str | os.PathLike) -> OfficialModel:
    """The released model of ``directory`` (args + checkpoint), in memory."""
    config = read_args(directory)
    params = convert_state_dict(read_state_dict(directory), config,
                                Path(directory) / CHECKPOINT)
    return OfficialModel(params=params, config=config)


def convert(directory: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Convert the release in ``directory`` and save it as an msync model under ``out``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "no such directory (the released model: `args` and "
                                    f"{CHECKPOINT})")
    model = load_release(directory)
    return save_model(out, model, keypoint_space=FOMM_SPACE,
                      features=feature_config("official"),
                      source=os.fspath(directory / CHECKPOINT),
                      source_sha256=sha256(directory / CHECKPOINT),
                      args_sha256=sha256(directory / ARGS))
