"""Typed run configuration: YAML in ``configs/`` → frozen dataclasses, with ``--set`` overrides.

A stage declares its config as nested frozen dataclasses (fields with defaults). :func:`load`
reads a YAML file into them, applies ``key.sub=value`` overrides (values parsed as YAML, so
``1``, ``1e-4``, ``true``, ``[1, 2]`` and ``box`` all mean what they look like), and refuses any
key the dataclass does not declare, naming it. :func:`dump` writes the resolved config that
every run saves beside its outputs, and that :func:`load` reads back to the same object.

Ranges (docs/design.md, "Run directories and configs"): a field declared with :func:`ranged`
(or its shorthands :func:`count`, :func:`non_negative`, :func:`positive`, :func:`probability`)
records the values it accepts in its metadata, and every conversion (:func:`from_dict`: a YAML
file, ``--set``, a run's saved ``config.yaml``, a model's ``model.json``) checks them, element by
element for a tuple. Every float must be finite. A value outside is one line naming the key, the
range and the value (``train.log_every must be >= 1; got 0``), before any work.
"""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

from syncers.run.errors import InputError
from syncers.run.outputs import published

C = TypeVar("C")
RANGE = "msync_range"           # the metadata key of a field's range


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a number accepts: ``lo``..``hi``, each bound inclusive unless ``*_open``."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        return not ((self.lo is not None and (value <= self.lo if self.lo_open
                                               else value < self.lo))
                    or (self.hi is not None and (value >= self.hi if self.hi_open
                                                  else value > self.hi)))

    def __str__(self) -> str:
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = None if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        if lo and hi and not (self.lo_open or self.hi_open):
            return f"from {self.lo:g} to {self.hi:g}"
        return " and ".join(filter(None, (lo, hi)))


def ranged(default: Any, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None) -> Any:
    """A config field with a default and the range its value (each element of a tuple) must
    lie in: ``steps: int = ranged(1000, ge=1)``. Checked by :func:`from_dict`."""
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise ValueError("give one lower and one upper bound at most")
    bounds = Range(lo=gt if gt is not None else ge, hi=lt if lt is not None else le,
                   lo_open=gt is not None, hi_open=lt is not None)
    return dataclasses.field(default=default, metadata={RANGE: bounds})


def count(default: int) -> Any:
    """A size, a number of steps or an interval: an integer >= 1."""
    return ranged(default, ge=1)


def non_negative(default: float) -> Any:
    """A weight, a count that may be 0 (0 = off), a duration: >= 0."""
    return ranged(default, ge=0)


def positive(default: float) -> Any:
    """A learning rate, a temperature, a variance: > 0."""
    return ranged(default, gt=0)


def probability(default: float) -> Any:
    """A probability: from 0 to 1."""
    return ranged(default, ge=0, le=1)


def field_range(cls: type, name: str) -> Range | None:
    """The range declared for ``cls.name``, or None."""
    return next((f.metadata.get(RANGE) for f in dataclasses.fields(cls) if f.name == name),
                None)


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
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise InputError(path, f"cannot read config ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset "
                               f"{err.start}); save the config as UTF-8") from None
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
    config = cls(**kwargs)
    # Every field, the defaults too: a default outside its own range is a bug caught here.
    for field in dataclasses.fields(cls):
        _check_range(field, getattr(config, field.name), source, prefix + field.name)
    return config


def check(config: Any, source: str = "config", prefix: str = "") -> None:
    """Check the ranges of a config built in code (the loaders check theirs already)."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            check(value, source, f"{prefix}{field.name}.")
        else:
            _check_range(field, value, source, prefix + field.name)


def _check_range(field: dataclasses.Field, value: Any, source: str, key: str) -> None:
    """Every float finite; a field with a :class:`Range` inside it (each element of a tuple)."""
    bounds = field.metadata.get(RANGE)
    values = value if isinstance(value, tuple) else (value,)
    for i, item in enumerate(values):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        name = f"{key}[{i}]" if isinstance(value, tuple) else key
        if isinstance(item, float) and not math.isfinite(item):
            raise InputError(source, f"{name} must be a finite number"
                                     f"{f' {bounds}' if bounds else ''}; got {item}")
        if bounds is not None and item not in bounds:
            raise InputError(source, f"{name} must be {bounds}; got {item}")


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
        return float(value)           # finite, and in its range: _check_range
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
