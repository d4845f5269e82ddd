"""Typed run configuration: YAML in ``configs/`` → frozen dataclasses, with ``--set`` overrides.

A stage declares its config as nested frozen dataclasses (fields with defaults). :func:`load`
reads a YAML file into them, applies ``key.sub=value`` overrides (values parsed as YAML, so
``1``, ``1e-4``, ``true``, ``[1, 2]`` and ``box`` all mean what they look like), and refuses any
key the dataclass does not declare, naming it. :func:`dump` writes the resolved config that
every run saves beside its outputs, and that :func:`load` reads back to the same object.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from syncers.run.errors import InputError
from syncers.run.outputs import published

C = TypeVar("C")


def load(cls: type[C], path: str | os.PathLike | None = None,
         overrides: Sequence[str] = ()) -> C:
    """Build a ``cls`` from the YAML at ``path`` (defaults where absent), then ``overrides``.

    Raises :class:`InputError` for an unreadable file, an unknown key, or a value of the
    wrong type, naming the file (or ``--set``) and the key.
    """
    data = read_yaml(path) if path is not None else {}
    config = from_dict(cls, data, source="--set" if path is None else os.fspath(path))
    return apply_overrides(config, overrides)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping a YAML config file holds (``{}`` for an empty file); an unreadable file, bad
    YAML or a top level that is not a mapping is an :class:`InputError` naming the file."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise InputError(path, f"cannot read config ({err.strerror or err})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML ({_first_line(err)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise InputError(path, "a config file must be a mapping of keys to values")
    return loaded


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """Return ``config`` with each ``"a.b=value"`` applied (value parsed as YAML)."""
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--set", f"expected key=value, got {item!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                raise InputError("--set", f"unknown config key {key.strip()!r}")
            node = child
        if parts[-1] not in node:
            raise InputError("--set", f"unknown config key {key.strip()!r}")
        node[parts[-1]] = value
    return from_dict(type(config), data, source="--set") if overrides else config


def from_dict(cls: type[C], data: Mapping[str, Any], source: str = "config",
              prefix: str = "") -> C:
    """Convert a (possibly nested) mapping to the dataclass ``cls``, checking keys and types."""
    if not isinstance(data, Mapping):
        raise InputError(source, f"{prefix.rstrip('.') or 'config'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InputError(source, f"unknown config key {prefix + str(unknown[0])!r}"
                         f" (known here: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, source, prefix + name)
    return cls(**kwargs)


def to_dict(config: Any) -> Any:
    """The plain-data form of a config (nested dicts, lists, scalars)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    return config


def dump(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (what a run saves as ``RUN/config.yaml``), atomically
    (``syncers.run.outputs.published``): a reader sees the old file or the new one."""
    with published(path) as partial:
        partial.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value if value is not None else {}, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, key)
            except InputError as err:
                errors.append(err)
        raise errors[0]
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise InputError(source, f"{key} must be one of {', '.join(map(str, allowed))};"
                             f" got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise InputError(source, f"{key} must be a list; got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(item, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            value = _parse_number(value, source, key)
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or
                                           (isinstance(value, float) and value.is_integer())):
            raise InputError(source, f"{key} must be an integer; got {value!r}")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(source, f"{key} must be true or false; got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise InputError(source, f"{key} must be a string; got {value!r}")
        return value
    return value


def _parse_number(value: Any, source: str, key: str) -> float:
    # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number it plainly is.
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(source, f"{key} must be a number; got {value!r}") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
