"""The one conversion between msync's keypoint layout and FOMM's keypoint dict.

msync stores keypoints as ``[..., K, 6]`` = ``(x, y, j11, j12, j21, j22)`` (docs/design.md,
"Data model"); FOMM passes ``{"value": [..., K, 2], "jacobian": [..., K, 2, 2]}`` with the
jacobian row-major (``jacobian[..., r, c] = ∂out_r/∂in_c``) acting on column vectors
``(x, y)ᵀ``. Coordinates are normalised: x right, y down, −1/+1 the centres of the first/last pixel.
Works on NumPy and jax arrays alike.
"""
from __future__ import annotations

from typing import Any, Mapping


def split(keypoints: Any) -> dict[str, Any]:
    """``[..., K, 6]`` → ``{"value": [..., K, 2], "jacobian": [..., K, 2, 2]}``."""
    if keypoints.shape[-1] != 6:
        raise ValueError(f"keypoints must be [..., K, 6]; got shape {tuple(keypoints.shape)}")
    value = keypoints[..., :2]
    jacobian = keypoints[..., 2:].reshape(keypoints.shape[:-1] + (2, 2))
    return {"value": value, "jacobian": jacobian}


def join(kp: Mapping[str, Any]) -> Any:
    """``{"value": [..., K, 2], "jacobian": [..., K, 2, 2]}`` → ``[..., K, 6]``."""
    value, jacobian = kp["value"], kp["jacobian"]
    if value.shape[-1] != 2 or jacobian.shape[-2:] != (2, 2) \
            or jacobian.shape[:-2] != value.shape[:-1]:
        raise ValueError(f"expected value [..., K, 2] and jacobian [..., K, 2, 2]; got "
                         f"{tuple(value.shape)} and {tuple(jacobian.shape)}")
    flat = jacobian.reshape(jacobian.shape[:-2] + (4,))
    xp = _namespace(value)
    return xp.concatenate([value, flat.astype(value.dtype)], axis=-1)


def _namespace(array: Any):
    import numpy as np
    if isinstance(array, np.ndarray):
        return np
    import jax.numpy as jnp
    return jnp
