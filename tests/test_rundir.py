"""The run-directory helpers both trainers share (syncers/run/rundir.py)."""
from __future__ import annotations

import json
import os
import time

import pytest

from syncers.run.errors import InputError, one_line
from syncers.run.rundir import (
    atomic_write,
    checkpoint_manager,
    config_diff,
    locked,
    read_json,
    remove_leftovers,
    truncate_metrics,
    write_json,
)


def test_config_diff_names_every_changed_or_missing_key_dotted():
    old = {"train": {"steps": 10, "seed": 0}, "model": {"width": 8}, "gone": 1}
    new = {"train": {"steps": 20, "seed": 0}, "model": {"width": 8}, "added": {"x": 1}}
    assert config_diff(old, new) == ["added", "gone", "train.steps"]
    assert config_diff(new, new) == []


def test_truncate_metrics_keeps_rows_up_to_each_levels_restored_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"level": 1, "step": 5}, {"level": 1, "step": 10}, {"level": 2, "step": 5},
            {"level": 2, "step": 10}, {"step": 3}, {"step": 7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"level": 1, "st')
    truncate_metrics(path, {1: 10, 2: 5, None: 3})
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert kept == [{"level": 1, "step": 5}, {"level": 1, "step": 10}, {"level": 2, "step": 5},
                    {"step": 3}]          # the line cut short by a kill is dropped too
    truncate_metrics(tmp_path / "absent.jsonl", {None: 0})
    assert not (tmp_path / "absent.jsonl").exists()
    # a rerun that trains only level 2 keeps every row of level 1 (a resumable --levels change)
    truncate_metrics(path, {2: 0})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"level": 1, "step": 5}, {"level": 1, "step": 10}, {"step": 3}]


def test_atomic_write_replaces_text_and_bytes_leaving_no_partial(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"a": 1})
    assert read_json(path) == {"a": 1}
    atomic_write(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_read_json_is_empty_when_absent_and_one_line_input_error_when_damaged(tmp_path):
    assert read_json(tmp_path / "run.json") == {}
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(InputError, match=r"run\.json: not valid JSON") as err:
        read_json(tmp_path / "run.json")
    assert "\n" not in str(err.value)


def test_one_line_keeps_the_type_and_first_line_only():
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(RuntimeError("")) == "RuntimeError"
    assert len(one_line(OSError("x" * 500))) == len("OSError: ") + 200


def test_checkpoint_manager_refuses_a_file_before_any_training(tmp_path):
    (tmp_path / "checkpoints").write_text("")
    with pytest.raises(InputError, match=r"checkpoints: exists and is not a directory"):
        checkpoint_manager(tmp_path / "checkpoints", max_to_keep=2)
    manager = checkpoint_manager(tmp_path / "fresh", max_to_keep=2)
    assert (tmp_path / "fresh").is_dir() and manager.latest_step() is None


def test_locked_is_reentrant_in_one_process_and_records_the_pid(tmp_path):
    run = tmp_path / "run"
    with locked(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())
        with locked(run):          # a command that locks a directory may call another
            pass
        with locked(run):
            pass
    with locked(run):              # released at the end of the outermost block
        pass


def test_a_reader_creates_and_cleans_up_nothing(tmp_path):
    with pytest.raises(InputError, match="missing checkpoint directory"):
        checkpoint_manager(tmp_path / "absent", reader=True)
    assert not (tmp_path / "absent").exists()
    saving = tmp_path / "level_1" / "6.orbax-checkpoint-tmp-1234567"
    saving.mkdir(parents=True)
    assert checkpoint_manager(tmp_path / "level_1", reader=True).latest_step() is None
    assert saving.is_dir()
    checkpoint_manager(tmp_path / "level_1", max_to_keep=2)     # a trainer's cleans up
    deadline = time.monotonic() + 30                   # (in a background thread)
    while saving.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not saving.exists()


def test_published_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_json(tmp_path / "run.json", {"a": 1})
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_remove_leftovers_removes_msyncs_temporary_names_only(tmp_path):
    ours = [tmp_path / ".run.abcd_123.partial.json", tmp_path / ".model.k2j4h5g6.partial"]
    ours[0].write_text("half")
    ours[1].mkdir()
    (ours[1] / "params.msgpack").write_bytes(b"half")
    theirs = [tmp_path / ".run.abcd.partial.json", tmp_path / ".run.backup.json",
              tmp_path / "run.json", tmp_path / ".model.k2j4h5g6.partial.old",
              tmp_path / "model.k2j4h5g6.partial"]
    for path in theirs:
        path.write_text("mine")
    assert remove_leftovers(tmp_path / "run.json", tmp_path / "model") == ours
    assert not any(path.exists() for path in ours)
    assert all(path.read_text() == "mine" for path in theirs)
