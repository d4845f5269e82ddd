"""The FOMM renderer API: :func:`load` a checkpoint, then :meth:`FommModel.keypoints` and
:meth:`FommModel.render` (FOMM demo.py make_animation, batched and chunked).

Both methods are jitted once per chunk shape: driving frames are processed ``chunk_size`` at a
time (the last chunk padded, so a long video compiles once and device memory stays bounded),
and the source's encoder features are computed once per :meth:`render` call.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from render.fomm.config import FommConfig, load_config
from render.fomm.convert import convert_state_dicts, read_checkpoint
from render.fomm.networks import networks
from render.fomm.store import METADATA, load_orbax
from syncers.run.errors import InputError


def normalize_kp(kp_source: Mapping, kp_driving: Mapping, kp_driving_initial: Mapping,
                 adapt_movement_scale: bool = False, use_relative_movement: bool = True,
                 use_relative_jacobian: bool = True) -> dict[str, np.ndarray]:
    """FOMM animate.normalize_kp (relative motion transfer), NumPy.

    kp_source/kp_driving_initial ``{"value": [1, K, 2], "jacobian": [1, K, 2, 2]}``, kp_driving
    ``[B, K, ..]``. value = (kp_d − kp_d0)·s + kp_s with s = sqrt(hull area(kp_s) / hull
    area(kp_d0)) (batch element 0) when ``adapt_movement_scale``, else 1; jacobian =
    J_d·J_d0⁻¹·J_s when ``use_relative_jacobian``.
    """
    src = {k: np.asarray(v, np.float32) for k, v in kp_source.items()}
    drv = {k: np.asarray(v, np.float32) for k, v in kp_driving.items()}
    init = {k: np.asarray(v, np.float32) for k, v in kp_driving_initial.items()}
    scale = 1.0
    if adapt_movement_scale:
        from scipy.spatial import ConvexHull
        # ConvexHull.volume is the area in 2-D.
        scale = float(np.sqrt(ConvexHull(src["value"][0]).volume)
                      / np.sqrt(ConvexHull(init["value"][0]).volume))
    out = dict(drv)
    if use_relative_movement:
        out["value"] = ((drv["value"] - init["value"]) * scale + src["value"]).astype(np.float32)
        if use_relative_jacobian:
            diff = np.matmul(drv["jacobian"], np.linalg.inv(init["jacobian"]))
            out["jacobian"] = np.matmul(diff, src["jacobian"]).astype(np.float32)
    return out


def _as_batched_kp(kp: Mapping, name: str, num_kp: int) -> dict[str, np.ndarray]:
    try:
        value = np.asarray(kp["value"], np.float32)
        jacobian = np.asarray(kp["jacobian"], np.float32)
    except (KeyError, TypeError):
        raise InputError(None, f"{name} must be a dict with 'value' and 'jacobian'") from None
    if value.ndim == 2:
        value, jacobian = value[None], jacobian[None]
    if value.ndim != 3 or value.shape[1:] != (num_kp, 2) \
            or jacobian.shape != value.shape[:2] + (2, 2):
        raise InputError(None, f"{name}: expected value [B, {num_kp}, 2] and jacobian "
                               f"[B, {num_kp}, 2, 2]; got {value.shape} and {jacobian.shape}")
    if not (np.isfinite(value).all() and np.isfinite(jacobian).all()):
        raise InputError(None, f"{name} contains NaN or infinity")
    return {"value": value, "jacobian": jacobian}


def _pad_to(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] == n:
        return x
    return np.concatenate([x, np.repeat(x[-1:], n - x.shape[0], axis=0)], axis=0)


@dataclasses.dataclass(frozen=True)
class FommModel:
    """Converted FOMM weights plus jitted inference. Build with :func:`load`."""
    config: FommConfig
    variables: Mapping[str, Any]
    chunk_size: int = 8

    def __post_init__(self):
        mods = networks(self.config)
        kp_vars, gen_vars = self.variables["kp_detector"], self.variables["generator"]
        gen = mods["generator"]
        object.__setattr__(self, "_kp_fn", jax.jit(
            lambda v, x: mods["kp_detector"].apply(v, x)))
        object.__setattr__(self, "_encode_fn", jax.jit(
            lambda v, s: gen.apply(v, s, method=gen.encode)))
        object.__setattr__(self, "_decode_fn", jax.jit(
            lambda v, s, f, ks, kd: _public(gen.apply(v, s, f, ks, kd, method=gen.decode))))
        object.__setattr__(self, "_kp_vars", kp_vars)
        object.__setattr__(self, "_gen_vars", gen_vars)

    def _check_images(self, images: Any, name: str, ndim: int) -> np.ndarray:
        images = np.asarray(images, np.float32)
        c = self.config
        if images.ndim != ndim or images.shape[-1] != c.generator.num_channels:
            want = "[B, H, W, 3]" if ndim == 4 else "[H, W, 3]"
            raise InputError(None, f"{name} must be {want}; got shape {images.shape}")
        # The hourglasses halve the downsampled image num_blocks times.
        need = max(int(round(2 ** c.kp_detector.num_blocks / c.kp_detector.scale_factor)),
                   int(round(2 ** c.generator.dense_motion.num_blocks
                             / c.generator.dense_motion.scale_factor)))
        h, w = images.shape[-3:-1]
        if h % need or w % need:
            raise InputError(None, f"{name}: height and width must be multiples of {need}; "
                                   f"got {h}×{w}")
        if not np.isfinite(images).all() or images.min() < -1e-3 or images.max() > 1 + 1e-3:
            raise InputError(None, f"{name} must hold values in [0, 1] (FOMM's range)")
        return images

    def keypoints(self, images: Any) -> dict[str, np.ndarray]:
        """images ``[B, H, W, 3]`` in [0, 1] → value ``[B, K, 2]``, jacobian ``[B, K, 2, 2]``."""
        images = self._check_images(images, "images", 4)
        n = min(self.chunk_size, images.shape[0])
        outs = []
        for start in range(0, images.shape[0], n):
            chunk = images[start:start + n]
            out = self._kp_fn(self._kp_vars, _pad_to(chunk, n))
            outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:len(chunk)], out))  # noqa: B023 - called here
        return {k: np.concatenate([o[k] for o in outs]) for k in ("value", "jacobian")}

    def render(self, source: Any, kp_source: Mapping, kp_driving: Mapping, *,
               relative: bool = False, adapt_movement_scale: bool = False,
               kp_driving_initial: Mapping | None = None) -> dict[str, np.ndarray]:
        """Animate ``source`` ``[H, W, 3]`` (in [0, 1]) with B driving keypoint sets.

        kp_source ``{"value": [K, 2] | [1, K, 2], "jacobian": [.., K, 2, 2]}``, kp_driving
        ``[B, K, ..]``. ``relative`` applies FOMM's normalize_kp against ``kp_driving_initial``
        (default: driving frame 0), with movement-scale adaptation if ``adapt_movement_scale``.
        Returns prediction ``[B, H, W, 3]``, occlusion_map ``[B, h, w]``, mask
        ``[B, h, w, K+1]`` (background first), deformed ``[B, H, W, 3]``; h, w = H/4, W/4 at vox.
        """
        source = self._check_images(source, "source", 3)[None]
        k = self.config.generator.num_kp
        kp_s = _as_batched_kp(kp_source, "kp_source", k)
        kp_d = _as_batched_kp(kp_driving, "kp_driving", k)
        if kp_s["value"].shape[0] != 1:
            raise InputError(None, "kp_source must be for one source image")
        if relative:
            init = kp_driving_initial or {key: v[:1] for key, v in kp_d.items()}
            kp_d = normalize_kp(kp_s, kp_d, _as_batched_kp(init, "kp_driving_initial", k),
                                adapt_movement_scale=adapt_movement_scale)
        features = self._encode_fn(self._gen_vars, source)
        total = kp_d["value"].shape[0]
        n = min(self.chunk_size, total)
        outs = []
        for start in range(0, total, n):
            chunk = {key: _pad_to(v[start:start + n], n) for key, v in kp_d.items()}
            out = self._decode_fn(self._gen_vars, source, features, kp_s, chunk)
            count = min(n, total - start)
            outs.append(jax.tree_util.tree_map(lambda a: np.asarray(a)[:count], out))  # noqa: B023 - called here
        return {key: np.concatenate([o[key] for o in outs]) for key in outs[0]}


def _public(out: dict) -> dict:
    return {k: out[k] for k in ("prediction", "occlusion_map", "mask", "deformed")
            if k in out}


def load(checkpoint: str | os.PathLike, config: str | os.PathLike | FommConfig | None = None,
         *, grid_align_corners: bool | None = None, chunk_size: int = 8) -> FommModel:
    """A :class:`FommModel` from an official ``.pth.tar`` or a ``msync render convert`` dir.

    ``config``: a FOMM YAML path or :class:`FommConfig` (default ``configs/render/vox-256.yaml``
    for a ``.pth.tar``; the stored config for an orbax dir). ``grid_align_corners`` overrides
    the config's value (docs/fomm.md, "grid_sample").
    """
    cfg = config if isinstance(config, FommConfig) or config is None else load_config(config)
    path = Path(checkpoint)
    if path.is_dir() and (path / METADATA).is_file():
        variables, cfg, _ = load_orbax(path, cfg)
    else:
        cfg = cfg or load_config(None)
        variables = convert_state_dicts(read_checkpoint(path), cfg, os.fspath(path))
    if grid_align_corners is not None:
        cfg = dataclasses.replace(cfg, grid_align_corners=bool(grid_align_corners))
    if chunk_size < 1:
        raise InputError(None, f"chunk_size must be >= 1; got {chunk_size}")
    variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    return FommModel(cfg, variables, chunk_size)
