"""Validation at the boundary (docs/design.md, "Run directories and configs"): every config
field's documented range is checked when the config is read, and so are the files msync reads
beside it. One class of bad input per case: one line naming the key (or file), the range and
the value, exit 2, nothing written."""
from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
import yaml
from syncer_data import make_dataset

from motion.app import cli
from motion.app.demo import DemoConfig
from motion.config import GeneratorRunConfig
from render.fomm import config as fomm_config
from render.fomm.networks import abstract_variables
from render.fomm.store import METADATA, WEIGHTS, save_orbax
from syncers.data.dataset import read_clip, write_clip
from syncers.run import config as config_lib
from syncers.train import SyncersConfig


def one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("msync: error: "), err
    assert "Traceback" not in err
    return lines[0]


def refused(argv, capsys, *outputs) -> str:
    """Run msync; it must exit 2 with one line and write none of ``outputs``."""
    assert cli.main([str(a) for a in argv]) == 2
    line = one_error(capsys)
    for path in outputs:
        assert not path.exists(), f"{path} was written"
    return line


# --------------------------------------------------------------------------- --set ranges

SET_CASES = [
    # (command, override, the message after "--set: ")
    ("syncers", "train.checkpoint_every=0", "train.checkpoint_every must be >= 1; got 0"),
    ("syncers", "train.log_every=0", "train.log_every must be >= 1; got 0"),
    ("syncers", "sampling.batch_size=0", "sampling.batch_size must be >= 1; got 0"),
    ("syncers", "optim.learning_rate=0", "optim.learning_rate must be > 0; got 0.0"),
    ("syncers", "optim.learning_rate=.nan", "optim.learning_rate must be a finite number > 0; "
                                            "got nan"),
    ("syncers", "model.embed_dim=0", "model.embed_dim must be from 1 to 16384; got 0"),
    ("syncers", "model.audio.depth=1000000000",
     "model.audio.depth must be from 0 to 256; got 1000000000"),
    ("syncers", "train.levels=[1,5]", "train.levels[1] must be from 1 to 4; got 5"),
    ("syncers", "sampling.hard_negatives=[-1,0,0,0]",
     "sampling.hard_negatives[0] must be >= 0; got -1"),
    ("syncers", "objective.temperature=-1", "objective.temperature must be > 0; got -1.0"),
    ("generator", "train.validate_every=0", "train.validate_every must be >= 1; got 0"),
    ("generator", "train.batch_size=0", "train.batch_size must be >= 1; got 0"),
    ("generator", "train.val_batch_size=0", "train.val_batch_size must be >= 1; got 0"),
    ("generator", "optim.lr_g=-1e-4", "optim.lr_g must be > 0; got -0.0001"),
    ("generator", "optim.lr_d=.inf", "optim.lr_d must be a finite number > 0; got inf"),
    ("generator", "optim.b2=1", "optim.b2 must be >= 0 and < 1; got 1.0"),
    ("generator", "model.obs_len=0", "model.obs_len must be from 1 to 1024; got 0"),
    ("generator", "model.n_layers=1000000000",
     "model.n_layers must be from 1 to 256; got 1000000000"),
    ("generator", "model.d_model=0", "model.d_model must be from 1 to 16384; got 0"),
    ("generator", "model.restore_seconds=-1",
     "model.restore_seconds must be from 0 to 3600; got -1.0"),
    ("generator", "loss.lambda_av=-1", "loss.lambda_av must be >= 0; got -1.0"),
    ("generator", "loss.lambda_rec=.inf", "loss.lambda_rec must be a finite number >= 0; "
                                          "got inf"),
    ("generator", "train.burn_in_frames=-1", "train.burn_in_frames must be >= 0; got -1"),
    ("generator", "data.augment.flip_prob=1.5",
     "data.augment.flip_prob must be from 0 to 1; got 1.5"),
    ("generator", "discriminators.windows=[5,0]", "discriminators.windows[1] must be >= 1; "
                                                  "got 0"),
    ("demo", "corpus.seconds=.inf", "corpus.seconds must be a finite number from 1.6 to 3600; "
                                    "got inf"),
    ("demo", "corpus.seconds=1", "corpus.seconds must be from 1.6 to 3600; got 1.0"),
    ("demo", "corpus.clips=5", "corpus.clips must be from 20 to 100000; got 5"),
    ("demo", "analyze.scales=5", "analyze.scales must be from 1 to 4; got 5"),
]


def _argv(command: str, tmp_path):
    out = tmp_path / "out"
    if command == "syncers":
        return ["train", "syncers", "--data", tmp_path / "data", "--out", out], out
    if command == "generator":
        return ["train", "generator", "--data", tmp_path / "data", "--syncers",
                tmp_path / "syncers", "--out", out], out
    return ["demo", "--out", out], out


@pytest.mark.parametrize("command, override, message", SET_CASES,
                         ids=[f"{c}-{o}" for c, o, _ in SET_CASES])
def test_a_value_out_of_range_is_one_line_naming_key_range_and_value(command, override, message,
                                                                    tmp_path, capsys):
    argv, out = _argv(command, tmp_path)
    line = refused(argv + ["--set", override], capsys, out)
    assert line == f"msync: error: --set: {message}"


@pytest.mark.parametrize("cls, name", [(SyncersConfig, "syncers.yaml"),
                                       (SyncersConfig, "syncers-small.yaml"),
                                       (SyncersConfig, "analyze.yaml"),
                                       (GeneratorRunConfig, "generator.yaml"),
                                       (GeneratorRunConfig, "generator-small.yaml"),
                                       (GeneratorRunConfig, "generator-real.yaml"),
                                       (DemoConfig, "demo.yaml")])
def test_every_shipped_config_lies_in_its_ranges(cls, name):
    import configs
    config = config_lib.load(cls, configs.path(name))
    config_lib.check(config)                     # the defaults of unset keys too


def test_a_range_in_a_config_file_names_the_file(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  log_every: 0\n")
    out = tmp_path / "out"
    line = refused(["train", "syncers", "--data", tmp_path, "--out", out, "--config", path],
                   capsys, out)
    assert line == f"msync: error: {path}: train.log_every must be >= 1; got 0"


def test_a_config_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  steps: 10  # réglé\n".encode("latin-1"))
    out = tmp_path / "out"
    line = refused(["train", "generator", "--data", tmp_path, "--syncers", tmp_path, "--out",
                    out, "--config", path], capsys, out)
    assert line.startswith(f"msync: error: {path}: not UTF-8 text (byte 0xe9 at offset ")


def test_a_saved_model_whose_obs_len_is_zero_is_refused(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    config = config_lib.to_dict(GeneratorRunConfig().model) | {"obs_len": 0}
    (model / "model.json").write_text(json.dumps({
        "format": "msync-generator", "version": 1, "config": config,
        "keypoint_space": "phantom-v1", "features": {}, "syncers_run": None, "step": 1}))
    out = tmp_path / "out.mp4"
    line = refused(["generate", "--model", model, "--out", out], capsys, out)
    assert line == (f"msync: error: {model / 'model.json'}: config.obs_len must be from 1 to "
                    "1024; got 0")


# --------------------------------------------------------------------------- FOMM

TINY_FOMM = {"kp_detector": {"block_expansion": 4, "max_features": 16, "num_blocks": 2},
             "generator": {"block_expansion": 4, "max_features": 16, "num_bottleneck_blocks": 1,
                           "dense_motion": {"block_expansion": 4, "max_features": 16,
                                            "num_blocks": 2}}}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A ``msync render convert`` directory of a tiny FOMM with random weights."""
    config = config_lib.from_dict(fomm_config.FommConfig, TINY_FOMM)
    rng = np.random.default_rng(0)
    weights = jax.tree_util.tree_map(lambda s: rng.standard_normal(s.shape).astype(s.dtype),
                                     abstract_variables(config))
    return save_orbax(tmp_path_factory.mktemp("fomm") / "fomm", weights, config, "0" * 64,
                      "tiny.pth.tar")


def _damage_missing(fomm):
    shutil.rmtree(fomm / WEIGHTS)
    return str(fomm / WEIGHTS), "missing: convert the checkpoint again"


def _damage_truncated(fomm):
    largest = max((p for p in (fomm / WEIGHTS).rglob("*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as handle:
        handle.truncate(100)
    return str(fomm / WEIGHTS), "cannot be restored (ValueError: OUT_OF_RANGE"


def _damage_config(fomm):
    meta = json.loads((fomm / METADATA).read_text())
    meta["config"]["model_params"]["kp_detector_params"]["block_expansion"] = 8
    (fomm / METADATA).write_text(json.dumps(meta))
    return str(fomm / METADATA), "its config does not match the weights beside it: "


def _damage_zero(fomm):
    meta = json.loads((fomm / METADATA).read_text())
    meta["config"]["model_params"]["common_params"]["num_kp"] = 0
    (fomm / METADATA).write_text(json.dumps(meta))
    return str(fomm / METADATA), "model_params.common_params.num_kp must be from 1 to 256; got 0"


@pytest.mark.parametrize("damage", [_damage_missing, _damage_truncated, _damage_config,
                                    _damage_zero], ids=lambda f: f.__name__[len("_damage_"):])
def test_a_damaged_converted_fomm_directory_is_one_line(damage, converted, tmp_path, capsys):
    fomm = tmp_path / "fomm"
    shutil.copytree(converted, fomm)
    where, message = damage(fomm)
    out = tmp_path / "out.npz"
    line = refused(["render", "parity", "--checkpoint", fomm, "--inputs", tmp_path / "in.npz",
                    "--out", out], capsys, out)
    assert line.startswith(f"msync: error: {where}: {message}"), line


def test_a_fomm_yaml_with_a_zero_size_is_one_line(tmp_path, capsys):
    import configs
    data = yaml.safe_load(configs.path("render/vox-256.yaml").read_text())
    data["model_params"]["generator_params"]["dense_motion_params"]["block_expansion"] = 0
    path = tmp_path / "zero.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out.npz"
    line = refused(["render", "parity", "--checkpoint", tmp_path / "vox.pth.tar", "--config",
                    path, "--inputs", tmp_path / "in.npz", "--out", out], capsys, out)
    assert line == (f"msync: error: {path}: model_params.generator_params.dense_motion_params."
                    "block_expansion must be from 1 to 4096; got 0")


# --------------------------------------------------------------------------- datasets

def _other_kind(data):
    """One train clip rewritten as MFCC (the same width) among the dataset's features."""
    clip = read_clip(data, "train", "train001")
    write_clip(data, "train", "train001", clip.keypoints, clip.audio_features,
               meta={**clip.meta, "features": {"kind": "mfcc", "n_bands": 26}})
    return "feature kind 'mfcc' vs 'test'"


def _other_width(data):
    clip = read_clip(data, "train", "train001")
    write_clip(data, "train", "train001", clip.keypoints, clip.audio_features[:, :13],
               meta=clip.meta)
    return "audio_features have 13 bands; the manifest's features have 26"


def _other_space(data):
    clip = read_clip(data, "train", "train001")
    write_clip(data, "train", "train001", clip.keypoints, clip.audio_features,
               meta={**clip.meta, "keypoint_space": "phantom-v1"})
    return "holds phantom-v1 keypoints; the manifest says test-v1"


@pytest.mark.parametrize("mix", [_other_kind, _other_width, _other_space],
                         ids=lambda f: f.__name__[1:])
@pytest.mark.parametrize("command", ["train", "analyze"])
def test_a_dataset_whose_clips_mix_kinds_is_one_line(mix, command, tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n_train=3, n_test=2)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["features"]["n_bands"] = 26
    (data / "manifest.json").write_text(json.dumps(manifest))
    message = mix(data)
    out = tmp_path / "out"
    argv = ["train", "syncers", "--data", data, "--out", out] if command == "train" else \
        ["analyze", "--data", data, "--out", out, "--points", "0-4"]
    line = refused(argv, capsys, out)
    assert line.startswith(f"msync: error: {data / 'train' / 'train001.npz'}: ") and \
        message in line, line


def test_analyze_checks_its_overrides_before_writing(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n_train=3, n_test=2)
    out = tmp_path / "out"
    line = refused(["analyze", "--data", data, "--out", out, "--points", "0-4", "--set",
                    "train.log_every=0"], capsys, out)
    assert line == "msync: error: --set: train.log_every must be >= 1; got 0"
