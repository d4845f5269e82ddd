"""Exact resume under faults: a real ``msync train syncers`` subprocess is killed with SIGKILL
during a training step, during a checkpoint write and during the final checkpoint write, and
restarted each time. It must resume from its last complete checkpoint (never a half-written
one), lose at most the steps since it, keep ``metrics.jsonl`` free of duplicated or dropped
rows, and end bit-identical to an uninterrupted run. A real ``msync train generator`` killed
during its final export (``RUN/model``) is repaired by a rerun, bit-identically.

Concurrency: a second process on a running run's directory is refused (``RUN/.lock``), and
the lock goes with its holder, however it dies.

Kill points are made reliable by the hooks of ``tests/msync_worker.py`` (slow batch sampling;
a checkpoint save that stalls inside orbax's temporary directory; an export that stalls
between its two files); none changes values.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from run_helpers import kill, refused_as_in_use
from syncer_data import make_dataset
from test_generator_train import GENERATOR, SYNCERS
from test_generator_train import _dataset as generator_dataset
from test_parallel import finish, launch, params
from test_syncer_train import TINY

from motion.app import cli
from syncers.run import config as config_lib
from syncers.run.rundir import locked
from syncers.train import SyncersConfig, train_and_evaluate

EVERY = 3
STEPS = 12
CONFIG = TINY | {"train": TINY["train"] | {"steps": STEPS, "checkpoint_every": EVERY,
                                           "log_every": 1, "levels": [1]}}


def level_dir(run: Path) -> Path:
    return run / "checkpoints" / "level_1"


def checkpoints(run: Path) -> list[int]:
    """Finalised checkpoint steps (orbax renames a complete temporary directory to ``<step>``)."""
    if not level_dir(run).is_dir():
        return []
    return sorted(int(p.name) for p in level_dir(run).iterdir() if p.name.isdigit())


def temporary(run: Path) -> list[Path]:
    if not level_dir(run).is_dir():
        return []
    return [p for p in level_dir(run).iterdir() if "tmp" in p.name]


def logged_steps(run: Path, strict: bool = False) -> list[int]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    steps = []
    for line in path.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            if strict:
                raise
    return steps


def wait_for(condition, process, log: Path, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"exited ({process.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_running_run_is_locked_and_readers_leave_its_saves_alone(tmp_path):
    """A trainer stalls inside a checkpoint save (orbax's temporary directory): a second
    trainer on its --out is refused naming its pid; ``msync evaluate`` reads the run meanwhile
    and leaves the save alone; SIGKILL releases the lock."""
    data = make_dataset(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run = tmp_path / "run"
    command = ["train", "syncers", "--data", str(data), "--config", str(config), "--out",
               str(run)]
    # A time-boxed first invocation: run.json lists level 1, so readers may read the run.
    train_and_evaluate(config_lib.load(SyncersConfig, config, [f"data_root={data}"]), run,
                       stop_after=EVERY)
    first, first_log = launch(command, tmp_path / "first.log", MSYNC_TEST_SLOW_SAVE="1")
    wait_for(lambda: "stalled saving" in first_log.read_text(), first, first_log,
             "the stalled save")
    saving = temporary(run)
    assert len(saving) == 1 and saving[0].name.startswith(f"{2 * EVERY}.")

    second, second_log = launch(command, tmp_path / "second.log")
    assert finish(second, second_log, time.monotonic() + 300) == 2
    assert refused_as_in_use(second_log.read_text(), run, first.pid), second_log.read_text()

    assert cli.main(["evaluate", "--data", str(data), "--syncers", str(run), "--out",
                     str(tmp_path / "eval")]) == 0
    assert temporary(run) == saving, "a reader removed the running trainer's save"
    assert first.poll() is None, "the refused process must leave the running one alone"
    kill(first)
    with locked(run):             # SIGKILL released it
        assert (run / ".lock").read_text().strip() == str(os.getpid())


@pytest.mark.slow
def test_sigkill_at_several_moments_resumes_bit_identically(tmp_path):
    data = make_dataset(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    run, whole = tmp_path / "run", tmp_path / "whole"

    def train(out: Path, log: str, **env):
        # Restarts reuse the first launches' compiled step (XLA's persistent cache).
        return launch(["train", "syncers", "--data", str(data), "--config", str(config),
                       "--out", str(out)], tmp_path / log,
                      JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla-cache"), **env)

    reference, reference_log = train(whole, "whole.log", MSYNC_TEST_DUMP=str(whole))
    rng = np.random.default_rng(0)
    report = []

    def after_kill(moment: str) -> int:
        """Check the killed run's files; returns the step a restart resumes from."""
        saved = checkpoints(run)
        resume = saved[-1] if saved else 0
        ran = max(logged_steps(run), default=0)
        assert resume <= ran and ran - resume <= EVERY, (moment, saved, ran)
        report.append(f"{moment}: logged step {ran}, last complete checkpoint {resume}, "
                      f"steps lost: {ran - resume}")
        return resume

    # 1. During a step: batches are slow (0.25 s), the kill lands at a random moment of one.
    process, log = train(run, "kill1.log", MSYNC_TEST_STEP_SLEEP="0.25")
    wait_for(lambda: len(logged_steps(run)) >= EVERY + 1, process, log, "step 4's row")
    time.sleep(rng.uniform(0, 0.25))
    kill(process)
    resume = after_kill("during a step")

    # 2. During a checkpoint write: the first save of the restarted run stalls after writing
    # into orbax's temporary directory, before the rename that completes it.
    process, log = train(run, "kill2.log", MSYNC_TEST_SLOW_SAVE="1")
    wait_for(lambda: "stalled saving" in log.read_text(), process, log, "the stalled save")
    kill(process)
    assert checkpoints(run)[-1] == resume, "the stalled checkpoint must not be complete"
    half = temporary(run)
    assert len(half) == 1 and half[0].name.startswith(f"{resume + EVERY}.")
    assert any(p.is_file() for p in half[0].rglob("*")), "the kill came before any write"
    assert max(logged_steps(run)) == resume + EVERY   # its row was written before the save
    resume = after_kill("during a checkpoint write")

    # 3. During the final checkpoint write (the level's last step).
    process, log = train(run, "kill3.log", MSYNC_TEST_SLOW_SAVE=str((STEPS - resume) // EVERY))
    wait_for(lambda: "stalled saving" in log.read_text(), process, log, "the final save")
    kill(process)
    assert any(p.name.startswith(f"{STEPS}.") for p in temporary(run))
    assert checkpoints(run)[-1] == STEPS - EVERY
    resume = after_kill("during the final checkpoint write")
    assert "levels" not in json.loads((run / "run.json").read_text()) or \
        "1" not in json.loads((run / "run.json").read_text())["levels"]

    # 4. Restart and run to the end.
    process, log = train(run, "final.log", MSYNC_TEST_DUMP=str(run))
    assert finish(process, log, time.monotonic() + 600) == 0, log.read_text()[-3000:]
    assert finish(reference, reference_log, time.monotonic() + 600) == 0, \
        reference_log.read_text()[-3000:]

    assert temporary(run) == []          # what the killed saves left was cleaned up
    assert logged_steps(run, strict=True) == list(range(1, STEPS + 1))
    def strip(path):
        return [{k: v for k, v in json.loads(line).items() if k != "steps_per_s"}
                for line in path.read_text().splitlines()]

    assert strip(run / "metrics.jsonl") == strip(whole / "metrics.jsonl")
    assert json.loads((run / "run.json").read_text())["levels"]["1"]["steps"] == STEPS
    resumed, uninterrupted = params(tmp_path, "run"), params(tmp_path, "whole")
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        np.testing.assert_array_equal(resumed[key], uninterrupted[key], err_msg=key)
    print("\n".join(report + ["final parameters bit-identical to the uninterrupted run"]))


@pytest.mark.slow
def test_sigkill_during_the_final_export_is_repaired_bit_identically(tmp_path):
    data = generator_dataset(tmp_path / "data")
    for name, config in (("syncers", SYNCERS), ("generator", GENERATOR)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    syncers = tmp_path / "syncers"
    assert cli.main(["train", "syncers", "--data", str(data), "--out", str(syncers),
                     "--config", str(tmp_path / "syncers.yaml")]) == 0
    run, whole = tmp_path / "run", tmp_path / "whole"
    steps, every = GENERATOR["train"]["steps"], GENERATOR["train"]["checkpoint_every"]
    final_export = steps // every + 1                # one export per checkpoint, then the last

    def train(out: Path, log: str, **env):
        return launch(["train", "generator", "--data", str(data), "--syncers", str(syncers),
                       "--config", str(tmp_path / "generator.yaml"), "--out", str(out)],
                      tmp_path / log, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla-cache"),
                      **env)

    reference, reference_log = train(whole, "whole.log")
    process, log = train(run, "killed.log", MSYNC_TEST_SLOW_EXPORT=str(final_export))
    wait_for(lambda: "stalled exporting" in log.read_text(), process, log, "the final export")
    kill(process)
    model = run / "model"
    # Killed between the files: the last step's parameters beside the previous model.json.
    assert json.loads((model / "model.json").read_text())["step"] == every * (steps // every)
    staged = [p for p in run.iterdir() if p.name.startswith(".model.")]
    assert len(staged) == 1 and (staged[0] / "model.json").is_file()

    process, log = train(run, "rerun.log")
    assert finish(process, log, time.monotonic() + 600) == 0, log.read_text()[-3000:]
    assert finish(reference, reference_log, time.monotonic() + 600) == 0, \
        reference_log.read_text()[-3000:]
    assert json.loads((model / "model.json").read_text())["step"] == steps
    assert (model / "params.msgpack").read_bytes() == \
        (whole / "model" / "params.msgpack").read_bytes()
    assert not any(p.name.startswith(".model.") for p in run.iterdir())

    def strip(path):
        return [{k: v for k, v in json.loads(line).items() if k != "steps_per_s"}
                for line in path.read_text().splitlines()]

    assert strip(run / "metrics.jsonl") == strip(whole / "metrics.jsonl")
