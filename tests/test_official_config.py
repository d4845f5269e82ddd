"""The released MS-Sync model's configuration (``motion.official.config``), parameter layout and
saved-model records, without torch: ``args`` are read as ``load_model`` reads them, every
configuration the official code cannot build or run is refused in one line naming the key, and a
converted model's ``model.json`` is checked on load."""
from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

from motion.app import cli
from motion.official.config import PAPER, OfficialConfig, from_args
from motion.official.layout import count_params, specs, to_msync, to_torch
from motion.official.model import OfficialModel
from motion.saved_model import load_model, save_model
from motion.talking_head import DEMO_MODEL_DIR
from syncers.run.errors import InputError

TINY = {"coord_dim": 32, "audio_dim": 16, "hidden_size": 16, "nheads_tf": 2, "nlayers_tf": 2,
        "nblocks_do": 7, "expansion_fact_do": 2, "pyramid_layers_g": 4, "data_dim": 6,
        "obs_len": 3, "streams_merging_activation": "softmax"}


def test_defaults_are_configs_and_training_keys_are_ignored():
    config = from_args({"data_dim": 6, "learning_rate_g": 2e-5, "net_type": "rnn",
                        "bias_stream": False, "data_dir": "vox/train"})
    assert config == dataclasses.replace(OfficialConfig(), data_dim=6)
    assert OfficialConfig().hidden_size == 64 and OfficialConfig().nlayers_tf == 1
    assert from_args({**TINY, "streams_merging_activation": "tanh"}) \
        .streams_merging_activation == "sigmoid"            # the official `else` branch


def test_the_papers_sizes_have_the_papers_parameter_count():
    assert count_params(PAPER) == 41_718_606


@pytest.mark.parametrize("change,key", [
    ({"nblocks_do": 5}, "nblocks_do"),
    ({"nheads_tf": 5}, "nheads_tf"),
    ({"pyramid_layers_g": 3}, "pyramid_layers_g"),
    ({"data_dim": 7}, "data_dim"),
    ({"obs_len": 1}, "obs_len"),
    ({"coord_dim": 0}, "coord_dim"),
    ({"hidden_size": 16.5}, "hidden_size"),
    ({"nlayers_tf": True}, "nlayers_tf"),
    ({"streams_merging_activation": None}, "streams_merging_activation"),
    ({"nblocks_do": 4}, "nblocks_do"),              # one-layer backbone narrower than 272
    ({"hidden_size": 1234}, "hidden_size"),         # 1282 channels in 4 groups
])
def test_configurations_the_official_code_cannot_run_are_refused(change, key):
    with pytest.raises(InputError) as info:
        from_args({**TINY, **change}, "release/args")
    message = str(info.value)
    assert message.startswith("release/args: ") and key in message and "\n" not in message


def test_every_layout_map_round_trips():
    rng = np.random.default_rng(0)
    for spec in specs(OfficialConfig(**TINY)):
        tensor = rng.standard_normal(spec.torch_shape).astype(np.float32)
        array = to_msync(spec, tensor)
        assert array.shape == spec.shape
        np.testing.assert_array_equal(to_torch(spec, array), tensor)


def _saved(tmp_path, **meta):
    config = OfficialConfig(**TINY)
    params = {}
    for spec in specs(config):
        node = params
        for part in spec.path[:-1]:
            node = node.setdefault(part, {})
        node[spec.path[-1]] = np.zeros(spec.shape, np.float32)
    path = save_model(tmp_path / "model", OfficialModel(params=params, config=config),
                      keypoint_space="fomm-vox256", features={"kind": "official"})
    info = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**info, **meta}))
    return path


def test_a_saved_release_loads_and_bad_records_are_refused(tmp_path, capsys):
    model, info = load_model(_saved(tmp_path))
    assert isinstance(model, OfficialModel) and info["arch"] == "ms-sync-official"
    for meta, message in (({"arch": "ms-sync-v2"}, "unknown arch"),
                          ({"config": {**TINY, "nblocks_do": 5}}, "nblocks_do"),
                          ({"config": {**TINY, "extra": 1}}, "config must hold exactly"),
                          ({"config": {**TINY, "streams_merging_activation": "tanh"}},
                           "streams_merging_activation")):
        path = _saved(tmp_path / message.replace(" ", "_"), **meta)
        with pytest.raises(InputError, match=message):
            load_model(path)
    bad = _saved(tmp_path / "shape", config={**TINY, "coord_dim": 64})
    with pytest.raises(InputError, match="parameter shapes do not match"):
        load_model(bad)


def test_convert_without_torch_is_one_line(monkeypatch, tmp_path, capsys):
    release = tmp_path / "release"
    release.mkdir()
    (release / "args").write_text(json.dumps(TINY))
    (release / "model_chkpt.pt").write_bytes(b"not read: torch is missing")
    monkeypatch.setitem(sys.modules, "torch", None)
    assert cli.main(["motion", "convert", "--checkpoint", str(release),
                     "--out", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs torch" in err[0] and "msync[torch]" in err[0], err
    assert not (tmp_path / "model").exists()


def test_evaluate_refuses_a_release_and_parity_refuses_msyncs_own_model(tmp_path, capsys):
    path = _saved(tmp_path)
    for argv, message in (
            (["evaluate", "--data", str(tmp_path), "--syncers", str(tmp_path), "--out",
              str(tmp_path / "eval"), "--model", str(path)], "msync-trained generators only"),
            (["motion", "parity", "--model", str(DEMO_MODEL_DIR), "--inputs",
              str(tmp_path / "in.npz"), "--out", str(tmp_path / "out.npz")],
             "not a converted MS-Sync release")):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
