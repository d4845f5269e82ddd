"""``msync motion parity``: the converted model on inputs from an npz, for comparison with the
official PyTorch code (docs/design.md, "Released MS-Sync model").

Input npz (``allow_pickle=False``), one of:
- ``inpt [O, 10, d]`` and ``audio [L, 26]`` (a leading batch axis is accepted on both): the raw
  forward, ``DynamicalModel.forward(inpt, audio)`` → ``obs_outputs [O − 1, 10, d]`` and
  ``outputs [L // 4 − O, 10, d]``;
- ``wav`` (a path: a 0-d string array) and ``kp0 [10, 6]``: the official front-end on that file
  → ``features [N, 26]``, and the inference protocol over the whole file → ``keypoints [T, 10,
  6]`` (``execute_model``'s output, the moved values; with ``data_dim < 6`` only those are
  written, ``[T, 10, d]``).
"""
from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path

import jax
import numpy as np

from motion.official import protocol
from motion.official.model import OfficialModel
from motion.official.rollout import forward
from syncers.data import official_audio
from syncers.data.layout import KEYPOINT_DIM, N_KEYPOINTS
from syncers.run.errors import InputError


def read_inputs(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of ``path`` for one of the two modes (module docstring)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(path, "inputs not found") from None
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise InputError(path, f"not a readable npz without pickles ({err})") from None
    if {"inpt", "audio"} <= set(arrays):
        return {"inpt": arrays["inpt"], "audio": arrays["audio"]}
    if {"wav", "kp0"} <= set(arrays):
        return {"wav": arrays["wav"], "kp0": arrays["kp0"]}
    raise InputError(path, f"expected arrays inpt and audio, or wav and kp0; got "
                           f"{sorted(arrays)}")


@functools.partial(jax.jit, static_argnames="config")
def _forward(params, inpt, audio, *, config):
    return forward(params, inpt, audio, config=config)


def raw_forward(model: OfficialModel, inpt, audio, source=None) -> dict[str, np.ndarray]:
    """``{"obs_outputs", "outputs"}`` of the raw forward (unbatched in, unbatched out)."""
    c = model.config
    inpt = np.asarray(inpt, np.float32)
    audio = np.asarray(audio, np.float32)
    batched = inpt.ndim == 4
    inpt, audio = (inpt, audio) if batched else (inpt[None], audio[None])
    if inpt.ndim != 4 or inpt.shape[1:] != (c.obs_len, N_KEYPOINTS, c.data_dim):
        raise InputError(source, f"inpt must be [obs_len={c.obs_len}, {N_KEYPOINTS}, "
                                 f"data_dim={c.data_dim}]; got {inpt.shape}")
    if (audio.ndim != 3 or audio.shape[0] != inpt.shape[0] or audio.shape[2] != c.audio_features
            or audio.shape[1] // 4 < c.obs_len + 1):
        raise InputError(source, f"audio must be [L, {c.audio_features}] with L >= "
                                 f"{4 * (c.obs_len + 1)}; got {audio.shape}")
    if not (np.all(np.isfinite(inpt)) and np.all(np.isfinite(audio))):
        raise InputError(source, "inpt and audio must be finite")
    obs_outputs, outputs = (np.asarray(a) for a in _forward(model.params, inpt, audio,
                                                            config=c))
    if not batched:
        obs_outputs, outputs = obs_outputs[0], outputs[0]
    return {"obs_outputs": obs_outputs, "outputs": outputs}


def on_recording(model: OfficialModel, wav, kp0, source=None) -> dict[str, np.ndarray]:
    """``{"features", "keypoints"}``: the front-end on the file ``wav`` and the protocol."""
    wav = np.asarray(wav)
    if wav.ndim != 0 or wav.dtype.kind not in "US":
        raise InputError(source, f"wav must be a 0-d string array (a path); got {wav.dtype} "
                                 f"{wav.shape}")
    kp0 = np.asarray(kp0, np.float32)
    if kp0.shape != (N_KEYPOINTS, KEYPOINT_DIM) or not np.all(np.isfinite(kp0)):
        raise InputError(source, f"kp0 must be finite [{N_KEYPOINTS}, {KEYPOINT_DIM}]; got "
                                 f"{kp0.shape}")
    path = Path(str(wav))
    features = official_audio.logfbank(official_audio.read_samples(path), path)
    keypoints = protocol.generate(model, kp0, features)[..., :model.config.data_dim]
    return {"features": features, "keypoints": keypoints}


def run_parity(model: OfficialModel, inputs: dict[str, np.ndarray], source=None
               ) -> dict[str, np.ndarray]:
    if "inpt" in inputs:
        return raw_forward(model, inputs["inpt"], inputs["audio"], source)
    return on_recording(model, inputs["wav"], inputs["kp0"], source)
