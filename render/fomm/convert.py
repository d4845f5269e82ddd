"""Official FOMM ``.pth.tar`` → Flax variables (``msync render convert`` saves them with orbax).

The checkpoint (FOMM logger.Logger.save_cpk) is a dict with one state dict per network plus
optimizers/epoch; only ``kp_detector`` and ``generator`` are read (as demo.load_checkpoints).
It is opened with ``torch.load(weights_only=True)``: the file is a pickle, and unrestricted
unpickling runs whatever code the file names. Keys map mechanically (docs/fomm.md,
"Checkpoint layout"):
``a.down_blocks.0.conv.weight`` → params ``a/down_blocks_0/conv/kernel`` (transposed 2,3,1,0),
``bottleneck.r3`` → ``bottleneck_3``, BN ``weight/bias`` → ``scale/bias``, ``running_mean/var`` →
batch_stats ``mean/var``; ``num_batches_tracked`` is ignored and the fixed anti-alias buffer
``down.weight`` is verified. Anything missing, unknown or misshaped is an error naming it.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from render.fomm.config import FommConfig, load_config
from render.fomm.networks import NETWORKS, abstract_variables
from render.fomm.ops import antialias_kernel
from render.fomm.store import save_orbax, sha256
from syncers.run.errors import InputError, optional_import


def _torch_module_name(segment: str) -> str:
    segment = re.sub(r"^(down_blocks|up_blocks)_(\d+)$", r"\1.\2", segment)
    return re.sub(r"^bottleneck_(\d+)$", r"bottleneck.r\1", segment)


_LEAVES = {("params", "kernel"): "weight", ("params", "bias"): "bias",
           ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
           ("batch_stats", "var"): "running_var"}


def torch_key(collection: str, path: tuple[str, ...]) -> str:
    """The state-dict key of a Flax leaf, e.g. ``("predictor", .., "kernel")`` → ``..weight``."""
    modules = [_torch_module_name(p) for p in path[:-1]]
    return ".".join(modules + [_LEAVES[(collection, path[-1])]])


def _from_torch(leaf: str, tensor: np.ndarray) -> np.ndarray:
    # torch conv weight is [out, in, kh, kw]; Flax kernel is [kh, kw, in, out].
    return np.transpose(tensor, (2, 3, 1, 0)) if leaf == "kernel" else tensor


def convert_state_dicts(state_dicts: Mapping[str, Mapping[str, Any]], config: FommConfig,
                        source: str = "checkpoint") -> dict[str, Any]:
    """``{"kp_detector": sd, "generator": sd}`` (numpy/torch tensors) → Flax variables.

    Raises :class:`InputError` naming every missing, unknown or misshaped tensor.
    """
    abstract = abstract_variables(config)
    out: dict[str, Any] = {}
    problems: list[str] = []
    for net in NETWORKS:
        sd = {k: np.asarray(v) for k, v in state_dicts[net].items()}
        used: set[str] = set()
        variables: dict[str, Any] = {}
        for collection, tree in abstract[net].items():
            flat = jax.tree_util.tree_flatten_with_path(tree)[0]
            for keypath, spec in flat:
                path = tuple(k.key for k in keypath)
                key = torch_key(collection, path)
                if key not in sd:
                    problems.append(f"missing tensor {net}.{key}")
                    continue
                used.add(key)
                value = _from_torch(path[-1], sd[key]).astype(np.float32)
                if value.shape != spec.shape:
                    problems.append(f"tensor {net}.{key} has shape {sd[key].shape}, expected "
                                    f"{_from_torch_shape(path[-1], spec.shape)}")
                    continue
                node = variables.setdefault(collection, {})
                for p in path[:-1]:
                    node = node.setdefault(p, {})
                node[path[-1]] = value
        bn_prefixes = {k[:-len("running_mean")] for k in used if k.endswith("running_mean")}
        buffers = {p + "num_batches_tracked" for p in bn_prefixes}  # ignored (docs/fomm.md)
        for prefix, scale in _antialias_buffers(net, config):
            key = prefix + "down.weight"
            buffers.add(key)
            if key not in sd:
                problems.append(f"missing tensor {net}.{key}")
            elif not _matches_kernel(sd[key], scale, config):
                problems.append(f"tensor {net}.{key} is not FOMM's anti-alias Gaussian "
                                f"(shape {sd[key].shape})")
        unknown = sorted(set(sd) - used - buffers)
        problems += [f"unknown tensor {net}.{k}" for k in unknown]
        out[net] = variables
    if problems:
        raise InputError(source, "; ".join(problems))
    return out


def _from_torch_shape(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[3], shape[2], shape[0], shape[1]) if leaf == "kernel" else tuple(shape)


def _antialias_buffers(net: str, config: FommConfig):
    if net == "kp_detector" and config.kp_detector.scale_factor != 1:
        yield "", config.kp_detector.scale_factor
    if net == "generator" and config.generator.dense_motion.scale_factor != 1:
        yield "dense_motion_network.", config.generator.dense_motion.scale_factor


def _matches_kernel(tensor: np.ndarray, scale: float, config: FommConfig) -> bool:
    kernel = antialias_kernel(scale)
    channels = config.generator.num_channels
    expected = np.broadcast_to(kernel, (channels, 1) + kernel.shape)
    return tensor.shape == expected.shape and np.allclose(tensor, expected, atol=1e-6)


def read_checkpoint(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """The kp_detector and generator state dicts of an official ``.pth.tar`` (legacy or zip).

    Only tensors and plain containers are unpickled (``weights_only=True``); a file whose pickle
    would import or call anything else is refused with :class:`InputError`.
    """
    # Deferred: torch is an optional dependency (msync[torch]); only conversion needs it,
    # orbax loads do not.
    torch = optional_import("torch", "reading a PyTorch FOMM checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, "checkpoint not found") from None
    except pickle.UnpicklingError as err:
        raise InputError(path, "refused: the checkpoint's pickle references code or "
                               "objects other than tensors and plain containers, which this "
                               f"loader never executes ({_unpickling_reason(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as err:
        # Arbitrary bytes fed to torch's legacy unpickler surface as any of these (an unknown
        # opcode is a KeyError), never as one documented error.
        raise InputError(path, "not a readable PyTorch checkpoint "
                               f"({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, Mapping):
        raise InputError(path, "checkpoint is not a dict of state dicts")
    missing = [n for n in NETWORKS if not isinstance(checkpoint.get(n), Mapping)]
    if missing:
        raise InputError(path, f"checkpoint has no {' or '.join(missing)} state dict")
    return {n: {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v))
                for k, v in checkpoint[n].items()} for n in NETWORKS}


def _unpickling_reason(err: Exception) -> str:
    """The informative line of torch's long weights_only message (e.g. the refused global)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Unsupported" in line or "GLOBAL" in line:
            return line.split(". Please use")[0].replace("WeightsUnpickler error: ", "")
    return lines[0] if lines else type(err).__name__


def convert(checkpoint: str | os.PathLike, config: str | os.PathLike | FommConfig | None,
            out: str | os.PathLike) -> Path:
    """Convert an official checkpoint and save it with orbax under ``out``."""
    cfg = config if isinstance(config, FommConfig) else load_config(config)
    variables = convert_state_dicts(read_checkpoint(checkpoint), cfg, os.fspath(checkpoint))
    return save_orbax(out, variables, cfg, sha256(checkpoint), Path(checkpoint).name)
