"""The FOMM checkpoint converter: both torch serialisations, the orbax store, the CLI commands,
and refusal of bad checkpoints (missing / unknown / misshaped tensors, code-running pickles)."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fomm_reference as ref

from render.fomm import load
from render.fomm.config import from_dict
from render.fomm.convert import convert_state_dicts, read_checkpoint
from syncers.run.errors import InputError

CONFIG = from_dict({"model_params": ref.SMALL_MODEL_PARAMS})


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(1)
    return ref.random_models(ref.SMALL_MODEL_PARAMS, True, seed=11)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)


def _state_dicts(models):
    kp_detector, generator = models
    return {"kp_detector": dict(kp_detector.state_dict()),
            "generator": dict(generator.state_dict())}


@pytest.mark.parametrize("legacy", [True, False])
def test_both_serialisations_load_to_the_same_weights(tmp_path, models, images, legacy):
    path = tmp_path / "ckpt.pth.tar"
    ref.save_checkpoint(path, *models, legacy=legacy)
    with open(path, "rb") as f:
        head = f.read(4)
    assert (head == b"PK\x03\x04") is not legacy  # zip vs legacy format really differ
    model = load(path, CONFIG)
    params = model.variables["generator"]["params"]
    # Conv kernels transposed [out, in, kh, kw] → [kh, kw, in, out]; BN stats in batch_stats.
    torch_w = models[1].state_dict()["first.conv.weight"].numpy()
    np.testing.assert_array_equal(params["first"]["conv"]["kernel"],
                                  torch_w.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(
        model.variables["generator"]["batch_stats"]["bottleneck_1"]["norm2"]["var"],
        models[1].state_dict()["bottleneck.r1.norm2.running_var"].numpy())
    with torch.no_grad():
        kp_ref = models[0](torch.from_numpy(images).permute(0, 3, 1, 2))
    kp = model.keypoints(images)
    assert np.abs(kp["value"] - kp_ref["value"].numpy()).max() <= 1e-4


def test_orbax_round_trip_via_cli(tmp_path, models, images):
    from motion.app.cli import main
    ckpt = tmp_path / "ckpt.pth.tar"
    ref.save_checkpoint(ckpt, *models, legacy=True)
    config_path = tmp_path / "small.yaml"
    import yaml
    config_path.write_text(yaml.safe_dump({"model_params": ref.SMALL_MODEL_PARAMS,
                                           "render_params": {"grid_align_corners": False}}))
    out = tmp_path / "converted"
    assert main(["render", "convert", "--checkpoint", str(ckpt), "--config", str(config_path),
                 "--out", str(out)]) == 0
    meta = json.loads((out / "fomm.json").read_text())
    assert meta["source_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["config"]["model_params"]["kp_detector_params"]["block_expansion"] == 8
    assert meta["config"]["render_params"]["grid_align_corners"] is False
    from_orbax = load(out)
    assert from_orbax.config.grid_align_corners is False
    from_torch = load(ckpt, config_path)
    a, b = from_orbax.keypoints(images), from_torch.keypoints(images)
    np.testing.assert_array_equal(a["value"], b["value"])

    # msync render parity on an npz, from the orbax directory, unbatched outputs.
    inputs = tmp_path / "in.npz"
    np.savez(inputs, source=images[0], drv_value=a["value"][1], drv_jacobian=a["jacobian"][1])
    result = tmp_path / "out.npz"
    assert main(["render", "parity", "--checkpoint", str(out), "--inputs", str(inputs),
                 "--out", str(result), "--grid-align-corners", "false"]) == 0
    # --out naming --inputs is refused before any work (and the inputs stay)
    before = inputs.read_bytes()
    assert main(["render", "parity", "--checkpoint", str(out), "--inputs", str(inputs),
                 "--out", f"{tmp_path}/./in.npz"]) == 2
    assert inputs.read_bytes() == before
    with np.load(result) as got:
        assert got["prediction"].shape == (64, 64, 3) and got["mask"].shape == (16, 16, 11)
        np.testing.assert_allclose(got["kp_value"], a["value"][0], atol=1e-6)
        rendered = from_torch.render(images[0], {k: v[:1] for k, v in a.items()},
                                     {k: v[1:] for k, v in a.items()})
        np.testing.assert_allclose(got["prediction"], rendered["prediction"][0], atol=1e-6)
        assert got["occlusion_map"].shape == (16, 16)


def _error(state_dicts) -> str:
    with pytest.raises(InputError) as info:
        convert_state_dicts(state_dicts, CONFIG, "ckpt.pth.tar")
    return str(info.value)


def test_missing_unknown_and_misshaped_tensors_are_named(models):
    sd = _state_dicts(models)
    del sd["generator"]["bottleneck.r1.norm1.running_mean"]
    message = _error(sd)
    assert message.startswith("ckpt.pth.tar: ")
    assert "missing tensor generator.bottleneck.r1.norm1.running_mean" in message

    sd = _state_dicts(models)
    sd["kp_detector"]["predictor.extra.weight"] = torch.zeros(3)
    assert "unknown tensor kp_detector.predictor.extra.weight" in _error(sd)

    sd = _state_dicts(models)
    sd["generator"]["final.weight"] = torch.zeros(3, 8, 5, 5)
    message = _error(sd)
    assert "generator.final.weight" in message and "(3, 8, 5, 5)" in message
    assert "(3, 8, 7, 7)" in message

    sd = _state_dicts(models)
    sd["kp_detector"]["down.weight"] = torch.ones(3, 1, 13, 13)
    assert "kp_detector.down.weight" in _error(sd)


def test_num_batches_tracked_is_ignored(models):
    import jax
    full = convert_state_dicts(_state_dicts(models), CONFIG)
    sd = _state_dicts(models)
    removed = 0
    for net in sd.values():
        for key in [k for k in net if k.endswith("num_batches_tracked")]:
            del net[key]
            removed += 1
    assert removed > 0
    stripped = convert_state_dicts(sd, CONFIG)
    same = jax.tree_util.tree_map(lambda a, b: bool(np.array_equal(a, b)), full, stripped)
    assert all(jax.tree_util.tree_leaves(same))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("legacy", [True, False])
def test_code_running_pickle_is_refused(tmp_path, legacy):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth.tar"
    torch.save({"kp_detector": {"x": _Evil(str(marker))}, "generator": {}}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(InputError) as info:
        read_checkpoint(path)
    assert not marker.exists()
    message = str(info.value)
    assert message.startswith(f"{path}: refused") and "open" in message, message


def test_plain_pickle_and_missing_networks_are_refused(tmp_path):
    path = tmp_path / "partial.pth.tar"
    torch.save({"kp_detector": {}, "epoch": 3}, path)
    with pytest.raises(InputError, match="generator"):
        read_checkpoint(path)
    with pytest.raises(InputError, match="not found"):
        read_checkpoint(tmp_path / "absent.pth.tar")
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(os.urandom(64))
    with pytest.raises(InputError, match=str(garbage)):
        read_checkpoint(garbage)
    text = tmp_path / "notes.pth.tar"
    text.write_text("hi\n")          # legacy unpickler: unknown opcode -> KeyError inside torch
    with pytest.raises(InputError, match="notes.pth.tar: not a readable PyTorch checkpoint"):
        read_checkpoint(text)
