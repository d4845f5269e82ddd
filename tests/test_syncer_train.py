"""Syncer training end to end on a tiny coupled dataset: CLI, resume, evaluate, bad input."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml
from syncer_data import make_dataset

from motion.app import cli
from syncers.models import Syncer
from syncers.run import config as config_lib
from syncers.train import SyncersConfig, jit_train_step, load_run, train_and_evaluate

WORKER = Path(__file__).with_name("msync_worker.py")

# Tiny sizes keep XLA's compile time (the bulk of these tests on a CPU) to a few seconds.
TINY = {
    "model": {"embed_dim": 16, "frame_hidden": 8, "audio": {"width": 8, "depth": 0},
              "motion": {"width": 8, "depth": 0}},
    "sampling": {"batch_size": 8, "hard_negatives": [3, 3, 3, 0],
                 "other_negatives": [0, 0, 0, 4]},
    "optim": {"learning_rate": 1e-3, "warmup_steps": 2, "schedule": "cosine"},
    "train": {"steps": 6, "checkpoint_every": 2, "log_every": 1, "levels": [1]},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("syncer-data") / "data")


@pytest.fixture(scope="module")
def tiny_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncer-config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="module")
def trained(data, tiny_yaml, tmp_path_factory):
    run = tmp_path_factory.mktemp("syncer-run") / "run"
    code = cli.main(["train", "syncers", "--data", str(data), "--out", str(run),
                     "--config", str(tiny_yaml), "--levels", "1,4"])
    assert code == 0
    return run


def rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_config_run_info_and_metrics(trained, data, tiny_yaml):
    config = config_lib.load(SyncersConfig, trained / "config.yaml")
    assert config.train.levels == (1, 4) and config.model.embed_dim == 16
    assert config.data_root == str(data)
    info = json.loads((trained / "run.json").read_text())
    assert info["keypoint_space"] == "test-v1" and info["features"] == {"kind": "test"}
    assert info["motion_dim"] == 60 and info["score"] == "cos"
    assert {k: v["steps"] for k, v in info["levels"].items()} == {"1": 6, "4": 6}
    table = rows(trained)
    assert [(r["level"], r["step"]) for r in table] == [(1, s) for s in range(1, 7)] + \
        [(4, s) for s in range(1, 7)]
    for row in table:
        assert set(row) >= {"step", "level", "loss", "accuracy", "lr", "steps_per_s"}
        assert np.isfinite(row["loss"]) and 0 <= row["accuracy"] <= 1
    # Rerunning a finished run trains nothing and adds no rows.
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(trained),
                     "--config", str(tiny_yaml), "--levels", "1,4"]) == 0
    assert rows(trained) == table


def test_evaluate_writes_the_issue_layout(trained, data, tmp_path):
    out = tmp_path / "eval"
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(trained),
                     "--out", str(out)]) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["n_clips"] == 3 and result["clip_frames"] == 200
    assert result["offsets"]["min"] == -15 and "5" in result["overlap_rule"]
    assert set(result["levels"]) == {"1", "4"}
    for entry in result["levels"].values():
        for kind in ("gt", "random"):
            m = entry[kind]
            assert 0 <= m["av_off_mean"] <= 15 and m["av_conf_mean"] >= 0
            assert -1 <= m["avs_u_mean"] <= 1 and "av_off_std" in m
    assert "| 4 | random |" in (out / "metrics.md").read_text()
    run = load_run(trained)
    assert run.levels == (1, 4)
    # auto: each level at its own length (2 s at level 1, 8 s at level 4); the same gt scores
    # as a run cut to that length
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(trained),
                     "--out", str(tmp_path / "auto"), "--clip-frames", "auto"]) == 0
    auto = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert auto["clip_frames"] == {"1": 50, "4": 200} and auto["n_clips"] == {"1": 3, "4": 3}
    assert auto["levels"]["4"] == result["levels"]["4"]
    assert "level 1: 3 clips × 50 frames" in (tmp_path / "auto" / "metrics.md").read_text()


def test_resume_is_bit_identical(data, tmp_path):
    config = config_lib.from_dict(SyncersConfig, TINY | {"data_root": str(data)})
    # The compiled step is cached per (model, objective, optimizer): other tests may have
    # compiled it already (level 4 shapes too), so count new compilations.
    model = Syncer(config.model, 60, 26)
    step = jit_train_step(model, config.objective, config.optim, config.train.steps)
    compiled_before = step._cache_size()
    train_and_evaluate(config, tmp_path / "whole")
    # Stop after 3 steps (mid-way between checkpoints at 2 and 4), then rerun to the end.
    train_and_evaluate(config, tmp_path / "resumed", stop_after=3)
    assert json.loads((tmp_path / "resumed" / "run.json").read_text())["levels"]["1"][
        "steps"] == 3
    train_and_evaluate(config, tmp_path / "resumed")
    whole, resumed = load_run(tmp_path / "whole"), load_run(tmp_path / "resumed")
    for a, b in zip(jax.tree.leaves(whole.params[1]), jax.tree.leaves(resumed.params[1])):
        np.testing.assert_array_equal(a, b)
    # Three invocations (fresh, stopped, resumed), one compilation of level 1: no re-tracing.
    assert step._cache_size() == max(compiled_before, 1)
    strip = lambda table: [{k: v for k, v in r.items() if k != "steps_per_s"}
                           for r in table]
    assert strip(rows(tmp_path / "whole")) == strip(rows(tmp_path / "resumed"))


def test_non_ascii_paths_work(trained, data, tiny_yaml, tmp_path):
    """Accents and emoji in --data and --out (through YAML an escaped emoji came back as two
    surrogates, and the dataset was "not found")."""
    here, run = tmp_path / "dätä 😀", tmp_path / "rün 🎬"
    shutil.copytree(data, here)
    assert cli.main(["train", "syncers", "--data", str(here), "--out", str(run),
                     "--config", str(tiny_yaml)]) == 0
    assert config_lib.load(SyncersConfig, run / "config.yaml").data_root == str(here)
    assert load_run(run).levels == (1,)
    assert cli.main(["evaluate", "--data", str(here), "--syncers", str(run),
                     "--out", str(tmp_path / "évál ✅")]) == 0


def one_line_error(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_data_dir_without_manifest(tmp_path, capsys, tiny_yaml):
    (tmp_path / "empty").mkdir()
    assert cli.main(["train", "syncers", "--data", str(tmp_path / "empty"), "--out",
                     str(tmp_path / "run"), "--config", str(tiny_yaml)]) == 2
    assert "manifest.json: missing" in one_line_error(capsys)


def test_unknown_config_key(data, tmp_path, capsys):
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(tmp_path / "run"),
                     "--set", "no.such=1"]) == 2
    assert "unknown config key 'no.such'" in one_line_error(capsys)


@pytest.mark.parametrize("override", ["train.max_to_keep=0", "train.steps=0",
                                      "train.checkpoint_every=0", "train.log_every=0"])
def test_settings_that_cannot_work_are_refused_before_training(data, tiny_yaml, tmp_path,
                                                               capsys, override):
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(tmp_path / "run"),
                     "--config", str(tiny_yaml), "--set", override]) == 2
    assert "must be >= 1" in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def damage(step_dir):
    for path in step_dir.rglob("*"):
        if path.is_file():
            path.write_bytes(b"not a checkpoint")


def test_corrupt_checkpoint_directory(trained, data, tiny_yaml, tmp_path, capfd):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    damage(run / "checkpoints" / "level_1")               # every step kept: none intact
    capfd.readouterr()
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(run),
                     "--config", str(tiny_yaml), "--levels", "1,4"]) == 2
    line = one_line_error(capfd)          # capfd: nothing from orbax or its C++ either
    assert "level_1: cannot restore the checkpoint of step 6" in line
    assert "nor any older one" in line
    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(run),
                     "--out", str(tmp_path / "eval")]) == 2
    assert "level_1" in one_line_error(capfd)


def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(trained, data,
                                                                         tiny_yaml, tmp_path,
                                                                         capfd):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    level_dir = run / "checkpoints" / "level_1"
    assert sorted(p.name for p in level_dir.iterdir()) == ["4", "6"]
    damage(level_dir / "6")
    capfd.readouterr()

    def warning():
        err = capfd.readouterr().err
        assert not any(word in err for word in ("Traceback", "absl", "ERROR")), err
        lines = [line for line in err.splitlines() if "warning" in line]
        assert len(lines) == 1, err
        return lines[0]

    # A reader uses step 4 and moves nothing. (In a process of its own: all of stderr, with
    # no pytest log capture in between, holds no more than the warning and the summary.)
    result = subprocess.run([sys.executable, str(WORKER), "evaluate", "--data", str(data),
                             "--syncers", str(run), "--out", str(tmp_path / "eval")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("msync: mean |AV-Off|"), result.stderr
    line = lines[0]
    assert line.startswith(f"msync: warning: {level_dir}: damaged checkpoint of step 6 (")
    assert line.endswith("; reading step 4 instead")
    assert sorted(p.name for p in level_dir.iterdir()) == ["4", "6"]
    # The trainer moves step 6 aside, resumes from 4 and ends as if nothing had happened.
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(run),
                     "--config", str(tiny_yaml), "--levels", "1,4"]) == 0
    aside = run / "checkpoints" / "level_1.damaged"
    assert warning().endswith(f"; moved to {aside}; resuming from step 4")
    assert sorted(p.name for p in aside.iterdir()) == ["6"]
    resumed, whole = load_run(run), load_run(trained)
    for a, b in zip(jax.tree.leaves(resumed.params[1]), jax.tree.leaves(whole.params[1])):
        np.testing.assert_array_equal(a, b)
    # the same rows (level 1's last two now follow level 4's)
    strip = lambda table: sorted([{k: v for k, v in r.items() if k != "steps_per_s"}
                                  for r in table], key=lambda r: (r["level"], r["step"]))
    assert strip(rows(run)) == strip(rows(trained))


def test_resuming_on_data_of_another_kind_is_refused(trained, data, tiny_yaml, tmp_path,
                                                     capsys):
    """data_root may change between invocations (the data moved), its kind may not."""
    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(trained, run)
    shutil.copytree(data, other)
    manifest = json.loads((other / "manifest.json").read_text())
    for change, message in (({"features": {"kind": "mfcc"}}, "feature kind 'mfcc' vs 'test'"),
                            ({"keypoint_space": "phantom-v1"}, "keypoint_space 'phantom-v1'")):
        (other / "manifest.json").write_text(json.dumps(manifest | change))
        capsys.readouterr()
        assert cli.main(["train", "syncers", "--data", str(other), "--out", str(run),
                         "--config", str(tiny_yaml), "--levels", "1,4"]) == 2
        line = one_line_error(capsys)
        assert line.startswith(f"msync: error: {other / 'manifest.json'}: ") and message in line
        assert "this run was trained on" in line and "use a new --out" in line
    assert (run / "config.yaml").read_text() == (trained / "config.yaml").read_text()


def test_nan_stops_with_a_clear_message(data, tiny_yaml, tmp_path, capsys):
    # A finite learning rate so large that the first steps overflow to NaN (a NaN learning
    # rate itself is refused when the config is read).
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(tmp_path / "run"),
                     "--config", str(tiny_yaml), "--set", "optim.learning_rate=1e38"]) == 2
    err = capsys.readouterr().err
    # the run had started: its progress lines come first, then the one error line
    lines = err.strip().splitlines()
    assert "Traceback" not in err and all(x.startswith("syncers:") for x in lines[:-1]), err
    line = lines[-1]
    assert "loss became nan" in line and "learning_rate" in line
