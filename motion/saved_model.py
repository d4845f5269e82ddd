"""A trained generator on disk: the file layout that ``generate``, ``evaluate --model`` and the
bundled demo model share.

A saved model is a directory holding

- ``model.json``: ``{"format": "msync-generator", "version": 1, "config": {GeneratorConfig
  fields}, "keypoint_space": str, "features": {feature config}, "syncers_run": str | null,
  "step": int, ...}`` (extra keys are kept in ``info``);
- ``params.msgpack``: the generator's parameters, ``flax.serialization.msgpack_serialize`` of a
  plain nested dict of float32 arrays. msgpack carries data only, so loading one never runs code.

:func:`load_model` also accepts a generator *training run* (``msync train generator --out RUN``),
whose exported model lives in ``RUN/model``.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from motion.generate import GeneratorModel
from motion.generator import GeneratorConfig, init_params
from syncers.errors import InputError

FORMAT = "msync-generator"
VERSION = 1
META = "model.json"
PARAMS = "params.msgpack"


def save_model(directory: str | os.PathLike, model: GeneratorModel, *, keypoint_space: str,
               features: dict | None = None, syncers_run: str | None = None, step: int = 0,
               **extra: Any) -> Path:
    """Write ``model`` and what it was trained on to ``directory`` (atomically per file)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), flax.core.unfreeze(model.params))
    _atomic_write(directory / PARAMS, flax.serialization.msgpack_serialize(params))
    meta = {"format": FORMAT, "version": VERSION, "config": dataclasses.asdict(model.config),
            "keypoint_space": keypoint_space, "features": features or {},
            "syncers_run": syncers_run, "step": int(step), **extra}
    _atomic_write(directory / META, (json.dumps(meta, indent=1) + "\n").encode())
    return directory


def load_model(path: str | os.PathLike) -> tuple[GeneratorModel, dict]:
    """``(GeneratorModel, info)`` from a saved model directory or a generator training run.

    ``info`` is the parsed ``model.json`` (``keypoint_space``, ``features``, ``syncers_run``,
    ``step``, ...). Anything malformed is an :class:`InputError` naming the file.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such model (a directory from `msync train generator`)")
    if (path / "model" / META).is_file() and not (path / META).is_file():
        path = path / "model"
    meta_path = path / META
    if not meta_path.is_file():
        raise InputError(path, f"not a generator model (no {META}; train one with "
                               "`msync train generator`)")
    try:
        info = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(meta_path, f"not valid JSON ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise InputError(meta_path, f"not an {FORMAT} file")
    if info.get("version") != VERSION:
        raise InputError(meta_path, f"format version {info.get('version')} is not supported "
                                    f"(this msync reads version {VERSION})")
    fields = {f.name for f in dataclasses.fields(GeneratorConfig)}
    raw = info.get("config")
    if not isinstance(raw, dict) or set(raw) - fields:
        raise InputError(meta_path, f"config has unknown keys {sorted(set(raw or {}) - fields)}")
    config = GeneratorConfig(**raw)
    params_path = path / PARAMS
    if not params_path.is_file():
        raise InputError(params_path, "missing")
    # Shapes only: building real initial values would cost a minute of eager Flax on a CPU.
    template = jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))
    try:
        state = flax.serialization.msgpack_restore(params_path.read_bytes())
        params = flax.serialization.from_state_dict(template, state)
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(params_path, f"cannot be read as generator parameters ({err})") from None
    bad = [jax.tree_util.keystr(k) for k, (a, b) in _pairs(template, params)
           if tuple(a.shape) != np.shape(b)]
    if bad:
        raise InputError(params_path, f"parameter shapes do not match model.json's config: "
                                      f"{', '.join(bad[:3])}")
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    return GeneratorModel(params=params, config=config), info


def _pairs(a, b):
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = jax.tree_util.tree_leaves(b)
    return [(k, (x, y)) for (k, x), y in zip(flat_a, flat_b)]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
