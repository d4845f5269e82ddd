"""Numerical parity of the Flax FOMM with a PyTorch re-statement of the official modules.

Random weights (BN running stats away from their defaults, jacobian head perturbed) are saved
in the official checkpoint layout, converted, and every output compared: keypoints ≤ 1e-4,
mask/occlusion/deformed/prediction ≤ 1e-3, in both grid_sample conventions. The sensitivity
tests prove the comparison would catch a wrong convention or ignored running statistics.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fomm_reference as ref

from render.fomm import load
from render.fomm.config import from_dict, load_config

KP_TOL, IMAGE_TOL = 1e-4, 1e-3


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # CI shares 2 cores
    yield
    torch.set_num_threads(previous)


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random images in [0, 1] (structured enough for keypoints to differ)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        f = rng.uniform(1, 4, (3, 2))
        p = rng.uniform(0, 2 * np.pi, 3)
        img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f[c, 0] * xx + f[c, 1] * yy) + p[c])
                        for c in range(3)], -1)
        out.append(np.clip(img + 0.05 * rng.standard_normal(img.shape), 0, 1))
    return np.asarray(out, np.float32)


def _max_diffs(model, kp_detector, generator, source, driving):
    kp_s_ref, kp_d_ref, out_ref = ref.reference_outputs(kp_detector, generator, source, driving)
    kp_s = model.keypoints(source[None])
    kp_d = model.keypoints(driving)
    # Render from the reference keypoints so generator errors are not mixed with detector ones.
    out = model.render(source, kp_s_ref, kp_d_ref)
    diffs = {"kp_value": np.abs(np.concatenate([kp_s["value"], kp_d["value"]])
                                - np.concatenate([kp_s_ref["value"], kp_d_ref["value"]])).max(),
             "kp_jacobian": np.abs(np.concatenate([kp_s["jacobian"], kp_d["jacobian"]])
                                   - np.concatenate([kp_s_ref["jacobian"],
                                                     kp_d_ref["jacobian"]])).max()}
    diffs.update({k: np.abs(out[k] - out_ref[k]).max() for k in out_ref})
    return diffs, out, out_ref


def _assert_parity(diffs):
    assert diffs["kp_value"] <= KP_TOL and diffs["kp_jacobian"] <= KP_TOL, diffs
    for k in ("mask", "occlusion_map", "deformed", "prediction"):
        assert diffs[k] <= IMAGE_TOL, diffs


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Checkpoints of the reduced config for both conventions (same weights)."""
    kp_detector, generator = ref.random_models(ref.SMALL_MODEL_PARAMS, True, seed=3)
    path = tmp_path_factory.mktemp("fomm") / "small.pth.tar"
    ref.save_checkpoint(path, kp_detector, generator)
    config = from_dict({"model_params": ref.SMALL_MODEL_PARAMS})
    return path, config, kp_detector, generator


@pytest.mark.parametrize("align_corners", [True, False])
def test_small_parity(small, align_corners):
    path, config, kp_detector, generator = small
    generator.align_corners = align_corners
    generator.dense_motion_network.align_corners = align_corners
    model = load(path, config, grid_align_corners=align_corners, chunk_size=2)
    diffs, out, out_ref = _max_diffs(model, kp_detector, generator, _images(1, 64, 0)[0],
                                     _images(3, 64, 1))
    print(f"align_corners={align_corners}", {k: f"{v:.2e}" for k, v in diffs.items()})
    _assert_parity(diffs)
    # The outputs are not degenerate: frames and masks differ, occlusion is not constant.
    assert out_ref["prediction"].std() > 0.02 and out_ref["occlusion_map"].std() > 0.01
    assert np.abs(out_ref["prediction"][0] - out_ref["prediction"][1]).max() > 0.01


def test_parity_is_sensitive_to_convention_and_running_stats(small):
    """A port with the other grid convention or with default BN statistics fails by far."""
    path, config, kp_detector, generator = small
    generator.align_corners = True
    generator.dense_motion_network.align_corners = True
    source, driving = _images(1, 64, 0)[0], _images(2, 64, 1)
    wrong_grid = load(path, config, grid_align_corners=False)
    diffs, _, _ = _max_diffs(wrong_grid, kp_detector, generator, source, driving)
    print("wrong convention", {k: f"{v:.2e}" for k, v in diffs.items()})
    assert diffs["deformed"] > 30 * IMAGE_TOL and diffs["prediction"] > 10 * IMAGE_TOL, diffs
    model = load(path, config, grid_align_corners=True)
    no_stats = {net: {"params": v["params"], "batch_stats": _reset_stats(v["batch_stats"])}
                for net, v in model.variables.items()}
    diffs, _, _ = _max_diffs(dataclasses.replace(model, variables=no_stats), kp_detector,
                             generator, source, driving)
    print("default BN stats", {k: f"{v:.2e}" for k, v in diffs.items()})
    assert diffs["prediction"] > 10 * IMAGE_TOL and diffs["mask"] > 10 * IMAGE_TOL, diffs
    assert diffs["kp_value"] > 100 * KP_TOL, diffs


def _reset_stats(tree):
    import jax
    import jax.numpy as jnp

    def reset(path, leaf):
        return jnp.zeros_like(leaf) if path[-1].key == "mean" else jnp.ones_like(leaf)
    return jax.tree_util.tree_map_with_path(reset, tree)


@pytest.mark.slow
def test_full_vox256_single_frame_parity(tmp_path):
    """The real vox-256 architecture at 256×256, one driving frame, torch-1.0 convention."""
    started = time.perf_counter()
    config = load_config(None)
    import yaml
    params = yaml.safe_load(open(ref_config_path()))["model_params"]
    kp_detector, generator = ref.random_models(params, True, seed=7)
    path = tmp_path / "vox.pth.tar"
    ref.save_checkpoint(path, kp_detector, generator)
    assert config.grid_align_corners is True
    model = load(path, config, chunk_size=1)
    diffs, _, out_ref = _max_diffs(model, kp_detector, generator, _images(1, 256, 5)[0],
                                   _images(1, 256, 6))
    print("vox-256", {k: f"{v:.2e}" for k, v in diffs.items()},
          f"{time.perf_counter() - started:.1f}s")
    _assert_parity(diffs)
    assert out_ref["prediction"].std() > 0.01


def ref_config_path():
    from render.fomm.config import DEFAULT_CONFIG
    return DEFAULT_CONFIG
