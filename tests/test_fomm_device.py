"""FOMM render on the accelerator matches CPU (Precision.HIGHEST keeps TF32 out of the convs).

Skipped when JAX only has a CPU.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from render.fomm import FommModel

pytestmark = [pytest.mark.device,
              pytest.mark.skipif(jax.devices()[0].platform == "cpu", reason="no accelerator")]


def test_render_on_device_matches_cpu():
    from test_fomm_model import small_model
    base = small_model()
    cpu = jax.devices("cpu")[0]
    accel = jax.devices()[0]
    on_cpu = FommModel(base.config, jax.device_put(base.variables, cpu), chunk_size=2)
    on_accel = FommModel(base.config, jax.device_put(base.variables, accel), chunk_size=2)
    frames = np.random.default_rng(0).random((3, 32, 32, 3), dtype=np.float32)
    kp_cpu, kp_acc = on_cpu.keypoints(frames), on_accel.keypoints(frames)
    np.testing.assert_allclose(kp_acc["value"], kp_cpu["value"], atol=1e-4)
    np.testing.assert_allclose(kp_acc["jacobian"], kp_cpu["jacobian"], atol=1e-4)
    kp_s = {k: v[:1] for k, v in kp_cpu.items()}
    out_cpu = on_cpu.render(frames[0], kp_s, kp_cpu)
    out_acc = on_accel.render(frames[0], kp_s, kp_cpu)
    assert jax.tree_util.tree_leaves(on_accel.variables)[0].devices() == {accel}
    for key in ("prediction", "mask", "occlusion_map", "deformed"):
        np.testing.assert_allclose(out_acc[key], out_cpu[key], atol=1e-3, err_msg=key)
