"""``msync render parity``: run the Flax FOMM on inputs from an npz, for comparison with PyTorch.

Input npz (read with ``allow_pickle=False``): ``source`` ``[H, W, 3]`` in [0, 1] (``[1, H, W, 3]``
or channels-first ``[3, H, W]`` / ``[1, 3, H, W]`` as PyTorch writes it are accepted),
``drv_value`` ``[K, 2]`` and ``drv_jacobian`` ``[K, 2, 2]`` (a leading batch of 1 is accepted).
Output npz, unbatched and channels-last: ``kp_value`` ``[K, 2]``, ``kp_jacobian`` ``[K, 2, 2]``
(of the source), ``prediction`` ``[H, W, 3]``, ``occlusion_map`` ``[h, w]``, ``mask``
``[h, w, K+1]`` (background first), ``deformed`` ``[H, W, 3]``.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from syncers.run.errors import InputError


def _source_hwc(source: np.ndarray, path: str) -> np.ndarray:
    if source.ndim == 4 and source.shape[0] == 1:
        source = source[0]
    if source.ndim == 3 and source.shape[0] == 3 and source.shape[-1] != 3:
        source = np.transpose(source, (1, 2, 0))  # PyTorch channels-first
    if source.ndim != 3 or source.shape[-1] != 3:
        raise InputError(path, f"source must be [H, W, 3]; got {source.shape}")
    return source.astype(np.float32)


def read_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{"source": [H, W, 3], "drv_value": [1, K, 2], "drv_jacobian": [1, K, 2, 2]}``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("source", "drv_value", "drv_jacobian")}
    except FileNotFoundError:
        raise InputError(path, "inputs not found") from None
    except KeyError as err:
        raise InputError(path, f"missing array {err.args[0]}") from None
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise InputError(path, f"not a readable npz without pickles ({err})") from None
    value = arrays["drv_value"].astype(np.float32)
    jacobian = arrays["drv_jacobian"].astype(np.float32)
    return {"source": _source_hwc(arrays["source"], os.fspath(path)),
            "drv_value": value if value.ndim == 3 else value[None],
            "drv_jacobian": jacobian if jacobian.ndim == 4 else jacobian[None]}


def run_parity(model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The unbatched outputs of ``model`` (a FommModel) on :func:`read_inputs`'s arrays."""
    kp_source = model.keypoints(inputs["source"][None])
    out = model.render(inputs["source"], kp_source,
                       {"value": inputs["drv_value"], "jacobian": inputs["drv_jacobian"]})
    return {"kp_value": kp_source["value"][0], "kp_jacobian": kp_source["jacobian"][0],
            **{k: v[0] for k, v in out.items()}}
