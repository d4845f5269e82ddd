"""``msync evaluate --model``: generated metrics at every level, motion statistics, drift,
errors."""
import json
import shutil

import flax.serialization
import jax
import numpy as np
import pytest
import yaml
from syncer_data import make_dataset
from tolerance import assert_close

from motion import evaluate as gen_eval
from motion.app import cli
from motion.generate import generate_batch
from motion.generator import TINY, init_params
from motion.model import GeneratorModel
from motion.saved_model import load_model, save_model
from syncers.data.dataset import load_split, read_manifest
from syncers.run.errors import InputError
from syncers.train import load_run

SYNCERS = {   # the tiny syncer sizes of tests/test_syncer_train.py: compile in seconds
    "model": {"embed_dim": 16, "frame_hidden": 8, "audio": {"width": 8, "depth": 0},
              "motion": {"width": 8, "depth": 0}},
    "sampling": {"batch_size": 8, "hard_negatives": [3, 3, 3, 0],
                 "other_negatives": [0, 0, 0, 4]},
    "optim": {"learning_rate": 1e-3, "warmup_steps": 2, "schedule": "cosine"},
    "train": {"steps": 4, "checkpoint_every": 4, "log_every": 1, "levels": [1]},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("gen-eval-data") / "data", n_train=4)


@pytest.fixture(scope="module")
def syncers(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen-eval-syncers")
    (tmp / "tiny.yaml").write_text(yaml.safe_dump(SYNCERS))
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(tmp / "run"),
                     "--config", str(tmp / "tiny.yaml"), "--levels", "1,4"]) == 0
    return tmp / "run"


def tiny_model(directory, keypoint_space="test-v1", zero_velocity=False, features=None):
    params = init_params(TINY, jax.random.key(0))
    if zero_velocity:   # w_out/b_out → 0: every branch's v^i is 0, so x_t = x0 for all t
        params = dict(params, head=dict(params["head"], w_out=np.zeros_like(
            params["head"]["w_out"]), b_out=np.zeros_like(params["head"]["b_out"])))
    save_model(directory, GeneratorModel(params, TINY), keypoint_space=keypoint_space,
               features=features)
    return directory


def one_line_error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_evaluate_model_adds_generated_stats_and_drift(data, syncers, tmp_path):
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(tiny_model(tmp_path / "model")), "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    plain = tmp_path / "plain"
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers),
                     "--out", str(plain)]) == 0
    without = json.loads((plain / "metrics.json").read_text())
    assert set(result["levels"]) == {"1", "4"}
    for level, entry in result["levels"].items():
        assert set(entry) == {"gt", "random", "generated"}
        # gt and random are those of the plain evaluation; generated has gt's keys + AVS_m/v
        assert entry["gt"] == without["levels"][level]["gt"]
        assert entry["random"] == without["levels"][level]["random"]
        assert set(entry["generated"]) == set(entry["gt"]) | {"avs_m_mean", "avs_v_mean"}
        assert 0 <= entry["generated"]["av_off_mean"] <= 15
        assert -1 <= entry["generated"]["avs_v_mean"] <= 1
    stats = result["generated_stats"]
    assert stats["l_rec"] > 0
    for key in ("velocity_pos", "acceleration_pos", "velocity_all", "acceleration_all"):
        assert stats["generated"][key] > 0 and stats["gt"][key] > 0
    drift = result["drift"]
    assert drift["finite"] is True and drift["frames"] == 1501 and drift["starts"] == 3
    assert drift["after_10s"] > 0 and drift["after_60s"] > 0
    md = (out / "metrics.md").read_text()
    assert "| 4 | generated |" in md and "L_rec" in md and "after 60 s" in md


def test_zero_velocity_model_does_not_drift(data, syncers, tmp_path):
    out = tmp_path / "eval"
    model = tiny_model(tmp_path / "model", zero_velocity=True)
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(model), "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["drift"]["after_10s"] == 0 and result["drift"]["after_60s"] == 0
    assert result["drift"]["max_over_run"] == 0 and result["drift"]["finite"] is True
    stats = result["generated_stats"]
    assert stats["generated"]["velocity_all"] == 0 and stats["generated"]["acceleration_pos"] == 0
    # a frozen first frame: L_rec is the ground truth's mean squared distance from frame 0
    clips = load_split(data, "test", read_manifest(data))
    expected = np.mean([np.mean((c.keypoints[:200] - c.keypoints[:1]).astype(np.float64) ** 2)
                        for c in clips])
    np.testing.assert_allclose(stats["l_rec"], expected, rtol=1e-5)


def test_ground_truth_through_the_generated_path_scores_as_gt(data, syncers):
    """An oracle 'generator' returning each clip's ground truth gets the gt numbers, L_rec = 0,
    the ground truth's statistics and AVS_v = AVS_m = 1."""
    clips = {c.keypoints[0].tobytes(): c for c in load_split(data, "test", read_manifest(data))}

    def oracle(x0, audio):
        n = audio.shape[1] // 4
        return np.stack([np.resize(clips[x.tobytes()].keypoints, (n, 10, 6)) for x in x0])

    result = gen_eval.evaluate_model(load_run(syncers), data, "test", 200, oracle,
                                     progress=False)
    for entry in result["levels"].values():
        for key, value in entry["gt"].items():
            np.testing.assert_allclose(entry["generated"][key], value, atol=1e-5, err_msg=key)
        np.testing.assert_allclose(entry["generated"]["avs_v_mean"], 1.0, atol=1e-5)
        np.testing.assert_allclose(entry["generated"]["avs_m_mean"], 1.0, atol=1e-5)
    stats = result["generated_stats"]
    assert stats["l_rec"] == 0 and stats["generated"] == stats["gt"]


def test_generate_clips_matches_one_batch(data):
    """Fixed-size chunks (the last padded by repetition) give the same frames as one batch."""
    clips = load_split(data, "test", read_manifest(data))
    model = GeneratorModel(init_params(TINY, jax.random.key(1)), TINY)

    def fn(x0, audio):
        return generate_batch(model, x0, audio)

    chunked = gen_eval.generate_clips(fn, clips, 40, batch=2, progress=False)
    whole = gen_eval.generate_clips(fn, clips, 40, batch=3, progress=False)
    assert chunked.shape == (3, 40, 10, 6)
    assert_close(chunked, whole, rel=2e-6)        # generated frames, not ~1: tolerance.py
    np.testing.assert_array_equal(chunked[:, 0], np.stack([c.keypoints[0] for c in clips]))


def test_rigid_displacement_is_the_mean_distance_of_keypoints_0_to_4():
    x = np.zeros((1, 3, 10, 6))
    x[0, 2, :5, :2] = [3.0, 4.0]          # rigid points moved by 5
    x[0, 2, 5:, :] = 100.0                # non-rigid points and jacobians do not count
    np.testing.assert_allclose(gen_eval.rigid_displacement(x), [[0.0, 0.0, 5.0]])


def test_keypoint_space_mismatch_is_a_one_line_error(data, syncers, tmp_path, capsys):
    model = tiny_model(tmp_path / "model", keypoint_space="phantom-v1")
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(model), "--out", str(tmp_path / "eval")]) == 2
    line = one_line_error(capsys)
    assert "model.json" in line and "'phantom-v1'" in line and "'test-v1'" in line


def test_models_data_and_syncers_must_share_the_feature_kind(data, syncers, tmp_path,
                                                             capsys):
    """Not only the number of bands: an mfcc model on logmel-like data is refused, and so is
    data of another kind than the syncers were trained on."""
    model = tiny_model(tmp_path / "model", features={"kind": "mfcc", "n_bands": 26})
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(model), "--out", str(tmp_path / "eval")]) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"msync: error: {model / 'model.json'}: the model's audio features "
                           "differ from the data's (feature kind 'mfcc' vs 'test'")
    other = tmp_path / "other"
    shutil.copytree(data, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps(manifest | {"features": {"kind": "mfcc"}}))
    assert cli.main(["evaluate", "--data", str(other), "--syncers", str(syncers),
                     "--out", str(tmp_path / "eval")]) == 2
    assert f"{other / 'manifest.json'}: the data's audio features differ from those the " \
        "syncers were trained on (feature kind 'mfcc' vs 'test')" in one_line_error(capsys)


def test_a_model_json_that_does_not_match_its_parameters_is_refused(data, syncers, tmp_path,
                                                                    capsys):
    """model.json's config and params.msgpack must describe one tree exactly: names and
    shapes, no leaf missing, none more (``n_layers`` edited 2 -> 1 once loaded, ignoring a
    layer)."""
    model = tiny_model(tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    params = flax.serialization.msgpack_restore((model / "params.msgpack").read_bytes())

    def edited(config=None, tree=None):
        (model / "model.json").write_text(json.dumps(meta | {"config": meta["config"] |
                                                             (config or {})}))
        (model / "params.msgpack").write_bytes(flax.serialization.msgpack_serialize(
            tree or params))
        with pytest.raises(InputError) as err:
            load_model(model)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert TINY.n_layers == 2
    assert edited({"n_layers": 1}).startswith(
        f"{model / 'params.msgpack'}: parameters do not match model.json's config: not in "
        "the config ['temporal']['layers_1']")
    assert edited({"n_layers": -2}) == f"{model / 'model.json'}: config.n_layers must be from " \
        "1 to 256; got -2"
    assert "config.n_layers must be an integer" in edited({"n_layers": "2"})
    assert "config cannot build a generator" in edited({"n_heads": 3})
    extra = params | {"head": params["head"] | {"w_extra": np.zeros(3, np.float32)}}
    assert "not in the config ['head']['w_extra']" in edited(tree=extra)
    missing = params | {"head": {k: v for k, v in params["head"].items() if k != "b_out"}}
    assert "missing ['head']['b_out']" in edited(tree=missing)
    edited(tree=params | {"head": params["head"] | {"b_out": np.zeros(1, np.float32)}})
    # the CLI says it in one line
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(model), "--out", str(tmp_path / "eval")]) == 2
    assert "parameter shapes do not match model.json's config" in one_line_error(capsys)


def test_missing_model_is_a_one_line_error(data, syncers, tmp_path, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(tmp_path / "nope"), "--out", str(tmp_path / "eval")]) == 2
    assert "nope" in one_line_error(capsys)


def test_evaluate_records_the_long_rollouts_beside_the_model_for_generate(data, syncers,
                                                                          tmp_path, capsys):
    """``evaluate --model`` writes long_horizon.json beside model.json; generate reads it for
    the model it was measured on (step and parameters) and ignores it once re-exported."""
    from motion.saved_model import (
        LONG_HORIZON,
        long_horizon_record,
        long_rollout_warning,
        model_dir,
    )

    run = tmp_path / "run"
    tiny_model(run / "model", zero_velocity=True)                   # a training run's layout
    model, info = load_model(run)
    assert "no long-rollout check is recorded" in long_rollout_warning(run, info, "RUN")
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(syncers), "--model",
                     str(run), "--out", str(tmp_path / "eval")]) == 0
    assert "msync: long rollouts stay in place (rigid keypoints 0.0 % of the frame width" \
        in capsys.readouterr().err
    record = json.loads((run / "model" / LONG_HORIZON).read_text())
    assert record["model_step"] == 0 and record["params_sha256"] == info["params_sha256"]
    assert record["verdict"]["drifts"] is False and record["drift"]["after_60s"] == 0
    _, info = load_model(run)
    assert long_horizon_record(run, info) == record
    assert long_rollout_warning(run, info, "RUN") is None           # checked, and it holds
    # a drifting record: generate says so, with the figures
    drifting = {**record, "drift": {**record["drift"], "after_60s": 0.5}}
    (model_dir(run) / LONG_HORIZON).write_text(json.dumps(drifting))
    warning = long_rollout_warning(run, info, "RUN")
    assert warning.startswith("RUN: this model drifts in long rollouts (rigid keypoints 25.0 % "
                              "of the frame width from their start after 60 s")
    # re-exported (another step): the record is stale and not read
    model, _ = load_model(run)
    save_model(run / "model", model, keypoint_space="test-v1", step=4)
    _, info = load_model(run)
    assert long_horizon_record(run, info) is None
    assert "no long-rollout check is recorded for this model (step 4)" in \
        long_rollout_warning(run, info, "RUN")
