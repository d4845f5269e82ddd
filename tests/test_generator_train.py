"""Generator training end to end (motion.train.train): resume, metrics, export, bad input.

A tiny coupled dataset (train/val/test), a tiny two-level syncer run and a tiny generator; the
steps are compiled unoptimised (``FAST_COMPILE``), which both runs of a comparison share.
"""
import functools
import json
import shutil
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest
import yaml
from generator_helpers import FAST_COMPILE
from run_helpers import held_by_another_process, refused_as_in_use
from syncer_data import coupled_clip

from motion.app import cli
from motion.config import GeneratorRunConfig
from motion.generate import generate
from motion.saved_model import load_model
from motion.train import TrainState, train
from syncers.data.dataset import write_clip, write_manifest
from syncers.run import config as config_lib

SYNCERS = {
    "model": {"embed_dim": 16, "frame_hidden": 8, "audio": {"width": 8, "depth": 0},
              "motion": {"width": 8, "depth": 0}},
    "sampling": {"batch_size": 8, "hard_negatives": [3, 3, 3, 0],
                 "other_negatives": [0, 0, 0, 4]},
    "optim": {"learning_rate": 1e-3},
    "train": {"steps": 2, "checkpoint_every": 2, "log_every": 1, "levels": [1, 2]},
}
GENERATOR = {
    "model": {"d_model": 16, "n_layers": 2, "n_heads": 2, "d_ff": 32, "encoder_hidden": 16,
              "fpn_channels": 8, "branch_hidden": 16, "branch_depth": 2,
              "velocity_init_scale": 0.1},
    "discriminators": {"frame_hidden": 16, "frame_layers": 2, "seq_embed": 8, "seq_hidden": 8,
                       "windows": [5, 20]},
    "loss": {"levels": 2},
    "optim": {"lr_g": 1e-3, "lr_d": 1e-3, "decay_step": 3},
    "train": {"steps": 5, "batch_size": 2, "seq_frames": 20, "checkpoint_every": 2,
              "log_every": 1, "validate_every": 2, "val_batch_size": 2},
}


def _dataset(root: Path, space: str = "test-v1", features: dict | None = None) -> Path:
    rng = np.random.default_rng(0)
    splits = {}
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        splits[split] = []
        for i in range(count):
            keypoints, audio = coupled_clip(rng, 200)
            write_clip(root, split, f"{split}{i}", keypoints, audio, meta={"fps": 25})
            splits[split].append((f"{split}{i}", 200))
    write_manifest(root, splits, keypoint_space=space, features=features or {"kind": "test"})
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("generator-train")
    data = _dataset(base / "data")
    (base / "syncers.yaml").write_text(yaml.safe_dump(SYNCERS))
    (base / "generator.yaml").write_text(yaml.safe_dump(GENERATOR))
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(base / "syncers"),
                     "--config", str(base / "syncers.yaml")]) == 0
    config = config_lib.load(GeneratorRunConfig, base / "generator.yaml")
    full = base / "full"
    train(config, data, base / "syncers", full, compiler_options=FAST_COMPILE)
    return {"base": base, "data": data, "syncers": base / "syncers", "config": config,
            "full": full}


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _final_state(run: Path) -> dict:
    """The latest checkpoint's arrays, read back without a template."""
    import orbax.checkpoint as ocp
    with ocp.CheckpointManager(run.resolve() / "checkpoints") as manager:
        return manager.restore(manager.latest_step())


def test_run_writes_config_info_metrics_and_model(setup):
    full = setup["full"]
    assert config_lib.load(GeneratorRunConfig, full / "config.yaml") == setup["config"]
    info = json.loads((full / "run.json").read_text())
    assert info["keypoint_space"] == "test-v1" and info["features"] == {"kind": "test"}
    assert info["syncers_run"] == str(setup["syncers"].resolve())
    assert info["val_split"] == "val" and info["steps"] == 5
    assert info["window_frames"] == 3 + 20 + setup["config"].model.lookahead
    assert set(info["val_ground_truth"]) == {"gt_av_1", "gt_av_2"}
    rows = _rows(full)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        assert {"g_total", "l_av", "l_gf", "l_gs", "l_rec", "d_loss", "l_df", "l_ds",
                "av_score_1", "av_score_2", "lr_g", "lr_d", "steps_per_s"} <= set(row)
        assert all(np.isfinite(v) for v in row.values())
        # step decay ×0.1 once the state's step reaches decay_step (3): updates 4 and 5
        assert row["lr_g"] == pytest.approx(1e-3 if row["step"] <= 3 else 1e-4)
    assert [r["step"] for r in rows if "val_av_1" in r] == [2, 4, 5]
    assert all({"val_av_2", "val_l_rec"} <= set(r) for r in rows if "val_av_1" in r)


def test_resume_is_bit_identical_and_drops_rows_past_the_checkpoint(setup):
    run = setup["base"] / "resumed"
    info = train(setup["config"], setup["data"], setup["syncers"], run, stop_after=3,
                 compiler_options=FAST_COMPILE)
    assert info["steps"] == 3 and [r["step"] for r in _rows(run)] == [1, 2, 3]
    # Kill after step 3 was logged but before its checkpoint: only step 2's remains.
    shutil.rmtree(run / "checkpoints" / "3")
    train(setup["config"], setup["data"], setup["syncers"], run, compiler_options=FAST_COMPILE)
    rows, reference = _rows(run), _rows(setup["full"])
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    for got, want in zip(rows, reference):
        got.pop("steps_per_s"), want.pop("steps_per_s")
        assert got == want
    got, want = _final_state(run), _final_state(setup["full"])
    assert set(got) == set(TrainState.__dataclass_fields__)
    flat_got, flat_want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(flat_got) == len(flat_want) and int(got["step"]) == 5
    for a, b in zip(flat_got, flat_want):
        np.testing.assert_array_equal(a, b)
    assert (run / "model" / "params.msgpack").read_bytes() == \
        (setup["full"] / "model" / "params.msgpack").read_bytes()
    # A finished run reruns as a no-op.
    train(setup["config"], setup["data"], setup["syncers"], run, compiler_options=FAST_COMPILE)
    assert [r["step"] for r in _rows(run)] == [1, 2, 3, 4, 5]


def test_exported_model_loads_and_generates(setup):
    model, info = load_model(setup["full"])
    assert info["step"] == 5 and info["keypoint_space"] == "test-v1"
    assert info["syncers_run"] == str(setup["syncers"].resolve())
    assert model.config == setup["config"].model
    params = flax.serialization.msgpack_restore(
        (setup["full"] / "model" / "params.msgpack").read_bytes())
    state = _final_state(setup["full"])
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(state["g_params"])):
        np.testing.assert_array_equal(a, b)
    clip = np.load(setup["data"] / "test" / "test0.npz")
    out = generate(model, clip["keypoints"][0], clip["audio_features"][:4 * 30])
    assert out.shape == (30, 10, 6) and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], clip["keypoints"][0])
    assert np.abs(out[1:] - out[0]).max() > 0          # it moves


def test_a_missing_partial_or_stale_export_is_repaired_by_a_rerun(setup, tmp_path):
    """A finished run whose RUN/model is missing, half there or older than its last checkpoint
    exports it again; what killed writers left is removed by msync's names only."""
    run = tmp_path / "run"
    shutil.copytree(setup["full"], run)
    model = run / "model"
    want = (setup["full"] / "model" / "params.msgpack").read_bytes()

    def rerun_and_check():
        train(setup["config"], setup["data"], setup["syncers"], run,
              compiler_options=FAST_COMPILE)
        assert (model / "params.msgpack").read_bytes() == want
        assert json.loads((model / "model.json").read_text())["step"] == 5

    shutil.rmtree(model)                                   # missing
    rerun_and_check()
    (model / "model.json").unlink()                        # partial
    rerun_and_check()
    meta = json.loads((model / "model.json").read_text())  # older: killed between the files
    (model / "model.json").write_text(json.dumps(meta | {"step": 4}))
    (model / "params.msgpack").write_bytes(b"\x80")
    ours = [run / ".model.k2j4h5g6.partial", model / ".params.a1b2c3d4.partial.msgpack",
            run / ".run.zz_9y8x7.partial.json"]
    ours[0].mkdir()
    (ours[0] / "model.json").write_text("{}")
    for path in ours[1:]:
        path.write_bytes(b"half")
    theirs = [run / ".model.backup", model / "notes.txt", run / ".model.k2j4h5g6.partial.old"]
    for path in theirs:
        path.write_text("mine")
    rerun_and_check()
    assert not any(path.exists() for path in ours)
    assert all(path.read_text() == "mine" for path in theirs)


def _cli(setup, tmp_path, *extra, data=None, syncers=None, out=None):
    return cli.main(["train", "generator", "--data", str(data or setup["data"]),
                     "--syncers", str(syncers or setup["syncers"]),
                     "--out", str(out or tmp_path / "run"),
                     "--config", str(setup["base"] / "generator.yaml"), *extra])


def test_init_from_starts_a_low_latency_twin_from_a_saved_model(setup, tmp_path, capsys,
                                                                monkeypatch):
    """``--init-from``: G starts from the saved model's parameters — after one Adam step (lr
    1e-3, each value moves by at most that) within 1e-3 of them, which lie 0.5 from the
    seed's; another model's sizes are refused. The command's training compiles its steps
    unoptimised (``FAST_COMPILE``) like the module's other runs: what is checked is where G
    starts, not XLA's code."""
    from motion.app import train as app_train
    monkeypatch.setattr(app_train.generator_train, "train",
                        functools.partial(train, compiler_options=FAST_COMPILE))
    start = tmp_path / "start"
    shutil.copytree(setup["full"] / "model", start)
    shifted = jax.tree.map(lambda a: np.asarray(a) + np.float32(0.5),
                           flax.serialization.msgpack_restore((start / "params.msgpack")
                                                              .read_bytes()))
    (start / "params.msgpack").write_bytes(flax.serialization.msgpack_serialize(shifted))
    source, _ = load_model(start)
    twin = tmp_path / "twin"
    assert _cli(setup, tmp_path, "--init-from", str(start), "--set", "model.fpn_lookahead=2",
                "--set", "train.steps=1", out=twin) == 0
    model, _ = load_model(twin)
    assert model.config.fpn_lookahead == 2 and model.config.lookahead == 2
    recorded = yaml.safe_load((twin / "config.yaml").read_text())
    assert recorded["train"]["init_from"] == str(start)
    moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(source.params))]
    assert 0 < max(moved) <= 1.01e-3

    capsys.readouterr()
    assert _cli(setup, tmp_path, "--init-from", str(start), "--set", "model.fpn_channels=4",
                out=tmp_path / "other") == 2
    err = capsys.readouterr().err
    assert f"{start}: train.init_from: its parameters' names or shapes differ" in err
    assert len(err.strip().splitlines()) == 1


def test_bad_input_is_one_line_naming_the_file(setup, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli(setup, tmp_path, data=empty) == 2
    assert f"{empty / 'manifest.json'}: missing" in capsys.readouterr().err

    assert _cli(setup, tmp_path, "--set", "no.such=1") == 2
    assert "--set: unknown config key 'no.such'" in capsys.readouterr().err

    for bad, message in (("optim.eps=0", "optim.eps must be > 0; got 0.0"),
                         ("optim.b2=1", "optim.b2 must be >= 0 and < 1; got 1.0")):
        assert _cli(setup, tmp_path, "--set", bad) == 2
        assert f"--set: {message}" in capsys.readouterr().err

    assert _cli(setup, tmp_path, syncers=empty) == 2
    assert f"{empty}: not a syncer run" in capsys.readouterr().err

    other = _dataset(tmp_path / "other", space="other-v1")
    assert _cli(setup, tmp_path, data=other) == 2
    err = capsys.readouterr().err
    assert f"{other / 'manifest.json'}: keypoint_space 'other-v1' differs" in err

    mfcc = _dataset(tmp_path / "mfcc", features={"kind": "mfcc"})
    assert _cli(setup, tmp_path, data=mfcc) == 2
    assert f"{mfcc / 'manifest.json'}: the data's audio features differ from the syncer " \
        "run's (feature kind 'mfcc' vs 'test'" in capsys.readouterr().err
    assert _cli(setup, tmp_path, data=mfcc, out=setup["full"]) == 2       # resuming on it
    assert "feature kind 'mfcc' vs 'test'" in capsys.readouterr().err

    broken = tmp_path / "broken"
    shutil.copytree(setup["full"], broken)
    for path in (broken / "checkpoints").rglob("*"):      # every step kept: none intact
        if path.is_file():
            path.write_bytes(b"garbage")
    assert _cli(setup, tmp_path, out=broken) == 2
    err = capsys.readouterr().err
    assert f"{broken / 'checkpoints'}: cannot restore the checkpoint of step 5" in err
    assert "nor any older one" in err and len(err.strip().splitlines()) == 1

    assert _cli(setup, tmp_path, "--set", "loss.lambda_av=2", out=setup["full"]) == 2
    assert "different loss.lambda_av" in capsys.readouterr().err


def test_a_run_in_use_by_another_process_is_refused(setup, tmp_path, capsys):
    run = tmp_path / "run"
    with held_by_another_process(run) as pid:
        assert _cli(setup, tmp_path, out=run) == 2
        assert refused_as_in_use(capsys.readouterr().err, run, pid)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]       # nothing else written


_FOUR_DEVICES = """
import sys
sys.path.insert(0, {repo!r})
from motion.config import GeneratorRunConfig
from motion.train import train
from syncers.run import config as config_lib
config = config_lib.load(GeneratorRunConfig, {config!r}, {overrides!r})
train(config, {data!r}, {syncers!r}, {out!r}, stop_after=3, compiler_options={options!r})
"""


@pytest.mark.slow
def test_four_devices_match_one_device(setup, tmp_path):
    """Data parallel (``syncers.run.parallel``): 3 steps on 4 CPU devices give the parameters of
    1 device with the same global batch (a subprocess: the device count is fixed at start).

    Both runs use Adam ε = 1e-3. With the default 1e-8, an entry whose gradient is zero up to
    rounding (the key bias, which the softmax ignores; each discriminator's output bias while
    every hinge term is active; an entry whose batch terms cancel) gets a ±lr step whose sign
    is that of the noise, so the four partial sums of the 4-device run, equally exact, move it
    by up to 2·lr per step (measured: temporal layers_0 ff1 kernel[14, 10], gradient +4.8e-8
    on one device and −4.0e-8 on four, against 0.11 for that leaf's largest entry), and the
    discriminators' flipped entries then shift later G gradients. With ε far above rounding
    noise a step is a Lipschitz function of the gradient, so every entry is compared."""
    import os
    import subprocess
    import sys
    base = setup["base"]
    overrides = ["train.batch_size=4", "optim.eps=1e-3"]
    config = config_lib.apply_overrides(setup["config"], overrides)
    train(config, setup["data"], setup["syncers"], tmp_path / "one", stop_after=3,
          compiler_options=FAST_COMPILE)
    script = _FOUR_DEVICES.format(repo=str(Path(__file__).resolve().parents[1]),
                                  config=str(base / "generator.yaml"), overrides=overrides,
                                  data=str(setup["data"]),
                                  syncers=str(setup["syncers"]), out=str(tmp_path / "four"),
                                  options=FAST_COMPILE)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    one, _ = load_model(tmp_path / "one")
    four, info = load_model(tmp_path / "four")
    assert info["step"] == 3
    difference = max(float(np.max(np.abs(a - b))) for a, b in
                     zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params)))
    print(f"generator, 1 vs 4 devices: max |param difference| = {difference:.3g}")
    assert difference <= 1e-5
    rng = np.random.default_rng(0)
    x0 = rng.normal(0, 0.3, (10, 6)).astype(np.float32)
    audio = rng.normal(size=(4 * 30, 26)).astype(np.float32)
    np.testing.assert_allclose(generate(four, x0, audio), generate(one, x0, audio), atol=5e-5)
    rows = _rows(tmp_path / "four")
    assert [r["step"] for r in rows] == [1, 2, 3]
