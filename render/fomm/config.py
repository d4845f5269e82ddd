"""FOMM model configuration: the ``model_params`` of a FOMM YAML as frozen dataclasses.

The official configs (``configs/render/vox-256.yaml``, ``vox-adv-256.yaml``) map one-to-one
onto constructor arguments (FOMM ``demo.load_checkpoints``): ``common_params`` go to both
networks, ``kp_detector_params`` to KPDetector, ``generator_params`` to
OcclusionAwareGenerator with its nested ``dense_motion_params`` for DenseMotionNetwork. Only
``model_params`` (and msync's own ``render_params``) are read; the training sections are
ignored. Unknown keys inside those sections are errors naming the key.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import configs
from syncers.run import config as config_lib
from syncers.run.config import positive, ranged
from syncers.run.errors import InputError

DEFAULT_CONFIG = configs.path("render/vox-256.yaml")


# Every size has an upper bound far above FOMM's: a config beside a checkpoint is untrusted, and
# a size of 10⁹ would plan that many blocks before anything could refuse it.


@dataclasses.dataclass(frozen=True)
class KPDetectorConfig:
    """FOMM ``KPDetector`` arguments (modules/keypoint_detector.py)."""
    block_expansion: int = ranged(32, ge=1, le=4096)
    num_kp: int = ranged(10, ge=1, le=256)
    num_channels: int = ranged(3, ge=1, le=16)
    max_features: int = ranged(1024, ge=1, le=16384)
    num_blocks: int = ranged(5, ge=1, le=32)
    temperature: float = positive(0.1)
    estimate_jacobian: bool = True
    scale_factor: float = ranged(0.25, gt=0, le=1)
    single_jacobian_map: bool = False
    pad: int = ranged(0, ge=0, le=256)


@dataclasses.dataclass(frozen=True)
class DenseMotionConfig:
    """FOMM ``DenseMotionNetwork`` arguments (modules/dense_motion.py)."""
    block_expansion: int = ranged(64, ge=1, le=4096)
    num_blocks: int = ranged(5, ge=1, le=32)
    max_features: int = ranged(1024, ge=1, le=16384)
    num_kp: int = ranged(10, ge=1, le=256)
    num_channels: int = ranged(3, ge=1, le=16)
    estimate_occlusion_map: bool = True
    scale_factor: float = ranged(0.25, gt=0, le=1)
    kp_variance: float = positive(0.01)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """FOMM ``OcclusionAwareGenerator`` arguments (modules/generator.py)."""
    num_channels: int = ranged(3, ge=1, le=16)
    num_kp: int = ranged(10, ge=1, le=256)
    block_expansion: int = ranged(64, ge=1, le=4096)
    max_features: int = ranged(512, ge=1, le=16384)
    num_down_blocks: int = ranged(2, ge=1, le=16)
    num_bottleneck_blocks: int = ranged(6, ge=0, le=256)
    estimate_occlusion_map: bool = True
    estimate_jacobian: bool = True
    dense_motion: DenseMotionConfig = DenseMotionConfig()


@dataclasses.dataclass(frozen=True)
class FommConfig:
    """Everything that decides the numbers of a FOMM port.

    ``grid_align_corners`` is grid_sample's convention (docs/fomm.md, "grid_sample"). Default
    True: the released checkpoints were trained on torch 1.0, whose grid_sample behaved as
    align_corners=True; torch >= 1.3 defaults to False, which zooms every warp by W/(W-1).
    """
    kp_detector: KPDetectorConfig = KPDetectorConfig()
    generator: GeneratorConfig = GeneratorConfig()
    grid_align_corners: bool = True


_COMMON = {"num_kp", "num_channels", "estimate_jacobian"}


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _section(data: Any, name: str, source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InputError(source, f"{name} must be a mapping")
    return dict(data)


def _check(keys, allowed: set[str], name: str, source: str) -> None:
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise InputError(source, f"unknown config key {name}.{unknown[0]}")


def from_dict(data: Mapping[str, Any], source: str = "config") -> FommConfig:
    """Build a :class:`FommConfig` from a parsed FOMM YAML (top-level mapping)."""
    if not isinstance(data, Mapping) or "model_params" not in data:
        raise InputError(source, "a FOMM config needs a model_params section")
    model = _section(data["model_params"], "model_params", source)
    common = _section(model.get("common_params"), "model_params.common_params", source)
    _check(common, _COMMON, "model_params.common_params", source)
    kp = _section(model.get("kp_detector_params"), "model_params.kp_detector_params", source)
    _check(kp, _fields(KPDetectorConfig) - _COMMON, "model_params.kp_detector_params", source)
    gen = _section(model.get("generator_params"), "model_params.generator_params", source)
    dense = _section(gen.pop("dense_motion_params", None),
                     "model_params.generator_params.dense_motion_params", source)
    _check(gen, _fields(GeneratorConfig) - _COMMON - {"dense_motion"},
           "model_params.generator_params", source)
    _check(dense, _fields(DenseMotionConfig) - _COMMON - {"estimate_occlusion_map"},
           "model_params.generator_params.dense_motion_params", source)
    render = _section(data.get("render_params"), "render_params", source)
    _check(render, {"grid_align_corners"}, "render_params", source)
    # FOMM's layout (common_params shared by both networks) onto the dataclasses' layout, then
    # the one converter (``syncers.run.config``) checks the values' types.
    common_kp = {k: v for k, v in common.items() if k != "estimate_jacobian"}
    shaped = {"kp_detector": {**kp, **common},
              "generator": {**gen, **common,
                            "dense_motion": {**dense, **common_kp, "estimate_occlusion_map":
                                             gen.get("estimate_occlusion_map", True)}}}
    if "grid_align_corners" in render:
        shaped["grid_align_corners"] = render["grid_align_corners"]
    try:
        config = config_lib.from_dict(FommConfig, shaped, source=source)
    except InputError as err:        # a type or range: named by the key the YAML holds
        key, _, rest = err.problem.partition(" ")
        raise InputError(source, f"{_yaml_key(key)} {rest}") from None
    if not config.kp_detector.estimate_jacobian or not config.generator.estimate_jacobian:
        # Every released checkpoint estimates jacobians; the port only implements that path.
        raise InputError(source, "estimate_jacobian: False is not supported")
    return config


def _yaml_key(key: str) -> str:
    """A :class:`FommConfig` key (``generator.dense_motion.num_blocks``) as the FOMM YAML
    spells it (``model_params.generator_params.dense_motion_params.num_blocks``)."""
    parts = key.split(".")
    name = parts[-1].split("[")[0]
    if parts[0] == "grid_align_corners":
        return "render_params.grid_align_corners"
    if name in _COMMON:
        section = "common_params"
    elif parts[0] == "kp_detector":
        section = "kp_detector_params"
    elif len(parts) == 3 and name != "estimate_occlusion_map":
        section = "generator_params.dense_motion_params"
    else:
        section = "generator_params"
    return f"model_params.{section}.{parts[-1]}"


def load_config(path: str | os.PathLike | None = None) -> FommConfig:
    """Read a FOMM YAML (default ``configs/render/vox-256.yaml``)."""
    path = DEFAULT_CONFIG if path is None else Path(path)
    return from_dict(config_lib.read_yaml(path), source=os.fspath(path))


def to_dict(config: FommConfig) -> dict[str, Any]:
    """The inverse of :func:`from_dict` (a FOMM-style ``model_params`` + ``render_params``)."""
    kp = dataclasses.asdict(config.kp_detector)
    gen = dataclasses.asdict(config.generator)
    dense = gen.pop("dense_motion")
    common = {k: kp.pop(k) for k in _COMMON}
    for k in _COMMON:
        gen.pop(k)
    for k in _COMMON | {"estimate_occlusion_map"}:
        dense.pop(k, None)
    gen["dense_motion_params"] = dense
    return {"model_params": {"common_params": common, "kp_detector_params": kp,
                             "generator_params": gen},
            "render_params": {"grid_align_corners": config.grid_align_corners}}
