"""FommModel API: chunking, batching, relative mode (normalize_kp), input checks, config.

Uses Flax-initialised random weights of a reduced config, so it needs no torch.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from render.fomm import FommModel, load_config, normalize_kp
from render.fomm.config import from_dict, to_dict
from render.fomm.networks import abstract_variables
from syncers.run.errors import InputError

SMALL = {
    "model_params": {
        "common_params": {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 16,
                               "scale_factor": 0.25, "num_blocks": 2},
        "generator_params": {"block_expansion": 8, "max_features": 16, "num_down_blocks": 2,
                             "num_bottleneck_blocks": 1, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 8, "max_features": 16,
                                                     "num_blocks": 2, "scale_factor": 0.25}}}}


def small_model() -> FommModel:
    """A reduced-config model with random weights, filled from the abstract shapes
    (compiling Flax's ``init`` is slow on CPU)."""
    config = from_dict(SMALL)
    rng = np.random.default_rng(0)

    def fill(path, spec):
        name = path[-1].key
        if name == "kernel":
            return rng.standard_normal(spec.shape).astype(np.float32) / np.sqrt(
                np.prod(spec.shape[:3]))
        if name == "var":
            return rng.uniform(0.5, 1.5, spec.shape).astype(np.float32)
        if name == "scale":
            return (1 + 0.1 * rng.standard_normal(spec.shape)).astype(np.float32)
        return (0.05 * rng.standard_normal(spec.shape)).astype(np.float32)

    variables = jax.tree_util.tree_map_with_path(fill, abstract_variables(config))
    return FommModel(config, variables, chunk_size=2)


@pytest.fixture(scope="module")
def model() -> FommModel:
    return small_model()


def _frames(n, seed=0):
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


def test_chunked_batches_equal_single_frames(model):
    frames = _frames(5)
    kp = model.keypoints(frames)
    assert kp["value"].shape == (5, 10, 2) and kp["jacobian"].shape == (5, 10, 2, 2)
    assert np.abs(kp["value"]).max() <= 1  # expectations over a [-1, 1] grid
    one = model.keypoints(frames[3:4])
    np.testing.assert_allclose(kp["value"][3], one["value"][0], atol=1e-6)
    kp_s = {k: v[:1] for k, v in kp.items()}
    out = model.render(frames[0], kp_s, kp)  # 5 frames in chunks of 2, last chunk padded
    assert out["prediction"].shape == (5, 32, 32, 3) and out["deformed"].shape == (5, 32, 32, 3)
    assert out["mask"].shape == (5, 8, 8, 11) and out["occlusion_map"].shape == (5, 8, 8)
    np.testing.assert_allclose(out["mask"].sum(-1), 1, atol=1e-5)
    single = model.render(frames[0], {k: v[0] for k, v in kp_s.items()},
                          {k: v[4:5] for k, v in kp.items()})
    np.testing.assert_allclose(out["prediction"][4], single["prediction"][0], atol=1e-5)
    # Long videos reuse the compiled chunk: a different length adds no compilation.
    size = model._decode_fn._cache_size()
    model.render(frames[0], kp_s, {k: np.concatenate([v, v]) for k, v in kp.items()})
    assert model._decode_fn._cache_size() == size


def test_normalize_kp_relative_and_adapt_scale():
    rng = np.random.default_rng(0)
    src = {"value": rng.uniform(-0.5, 0.5, (1, 10, 2)),
           "jacobian": np.eye(2) + 0.1 * rng.standard_normal((1, 10, 2, 2))}
    init = {"value": 2 * src["value"],  # same shape, twice the size → area ×4, scale 1/2
            "jacobian": np.eye(2) + 0.1 * rng.standard_normal((1, 10, 2, 2))}
    drv = {"value": init["value"] + 0.2, "jacobian": np.tile(init["jacobian"], (1, 1, 1, 1))}
    out = normalize_kp(src, drv, init, adapt_movement_scale=True)
    np.testing.assert_allclose(out["value"], src["value"] + 0.1, atol=1e-6)
    # Driving jacobian equal to the initial one → the source jacobian is kept.
    np.testing.assert_allclose(out["jacobian"], src["jacobian"], atol=1e-5)
    plain = normalize_kp(src, drv, init, adapt_movement_scale=False)
    np.testing.assert_allclose(plain["value"], src["value"] + 0.2, atol=1e-6)
    absolute = normalize_kp(src, drv, init, use_relative_movement=False)
    np.testing.assert_array_equal(absolute["value"], drv["value"].astype(np.float32))


def test_relative_render_from_first_frame_reproduces_source_keypoints(model):
    frames = _frames(3, seed=1)
    kp = model.keypoints(frames)
    kp_s = {k: v[:1] for k, v in kp.items()}
    relative = model.render(frames[0], kp_s, kp, relative=True)
    # Frame 0 relative to itself is the source's own keypoints.
    direct = model.render(frames[0], kp_s, kp_s)
    np.testing.assert_allclose(relative["prediction"][0], direct["prediction"][0], atol=1e-5)


def test_bad_inputs_are_refused(model):
    frames = _frames(2)
    with pytest.raises(InputError, match=r"\[B, H, W, 3\]"):
        model.keypoints(frames[0])
    with pytest.raises(InputError, match="multiples of 16"):
        model.keypoints(np.zeros((1, 40, 40, 3), np.float32))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        model.keypoints(frames * 255)
    kp = model.keypoints(frames)
    with pytest.raises(InputError, match="kp_driving"):
        model.render(frames[0], kp, {"value": kp["value"][:, :5], "jacobian": kp["jacobian"]})
    with pytest.raises(InputError, match="one source"):
        model.render(frames[0], kp, kp)


def test_shipped_configs_are_the_official_model_params():
    vox = load_config(None)
    adv = load_config(load_config.__globals__["DEFAULT_CONFIG"].with_name("vox-adv-256.yaml"))
    assert vox == adv  # identical generator and kp_detector (docs/fomm.md, "Config values")
    assert vox.grid_align_corners is True
    assert vox.kp_detector.temperature == 0.1 and vox.kp_detector.num_blocks == 5
    assert vox.generator.max_features == 512 and vox.generator.num_bottleneck_blocks == 6
    assert vox.generator.dense_motion.max_features == 1024
    assert vox.generator.dense_motion.kp_variance == 0.01
    assert from_dict(to_dict(vox)) == vox
    bad = to_dict(vox)
    bad["model_params"]["kp_detector_params"]["temprature"] = 0.1
    with pytest.raises(InputError, match="temprature"):
        from_dict(bad)
    assert dataclasses.replace(vox, grid_align_corners=False) != vox
