"""Data-parallel syncer training (``syncers.run.parallel``): 4 devices and 2 processes give the
parameters of 1 device with the same global batch; per-process batch slices; ``--distributed``.

The multi-device runs are subprocesses (``tests/msync_worker.py``): XLA's device count and
``jax.distributed`` must be set before JAX starts. They run concurrently, once per module.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np
import pytest
import yaml
from syncer_data import make_dataset
from test_syncer_train import TINY

from motion.app import cli
from syncers.data.dataset import load_split
from syncers.run import parallel
from syncers.run.errors import InputError
from syncers.sampling import DataConfig, Sampler, SamplingConfig

WORKER = Path(__file__).with_name("msync_worker.py")
REPO = WORKER.parents[1]
TIMEOUT = 900
TOL = 1e-5


def free_port() -> int | None:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    except OSError:
        return None


def launch(args, log: Path, **env) -> tuple[subprocess.Popen, Path]:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS_ID"))}
    environment.pop("XLA_FLAGS", None)
    environment.update(env)
    with open(log, "w") as handle:
        process = subprocess.Popen([sys.executable, str(WORKER), *args], cwd=REPO,
                                   env=environment, stdout=handle, stderr=subprocess.STDOUT)
    return process, log


def finish(process: subprocess.Popen, log: Path, deadline: float) -> int:
    try:
        return process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"timed out; log:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three-step runs of level 1 with global batch 8: 1 device, 4 devices (one process),
    2 processes (one device each) — started together, awaited together."""
    root = tmp_path_factory.mktemp("parallel")
    data = make_dataset(root / "data")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY | {"train": TINY["train"] | {"steps": 3}}))
    common = ["train", "syncers", "--data", str(data), "--config", str(config)]
    jobs = {
        "1": [launch(common + ["--out", str(root / "one")], root / "one.log",
                     MSYNC_TEST_DUMP=str(root / "one"))],
        "4": [launch(common + ["--out", str(root / "four")], root / "four.log",
                     MSYNC_TEST_DUMP=str(root / "four"),
                     XLA_FLAGS="--xla_force_host_platform_device_count=4")],
    }
    port = free_port()
    skip_two = None
    if port is None:
        skip_two = "cannot bind a localhost port for the jax.distributed coordinator"
    elif not hasattr(jax.config, "jax_cpu_collectives_implementation"):
        skip_two = "this jax has no CPU collectives (jax_cpu_collectives_implementation)"
    else:
        jobs["2"] = [launch(common + ["--out", str(root / "two"), "--distributed"],
                            root / f"two{i}.log", MSYNC_TEST_DUMP=str(root / "two"),
                            JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                            JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))
                     for i in range(2)]
    deadline = time.monotonic() + TIMEOUT
    codes = {}
    for name, processes in jobs.items():
        codes[name] = [finish(process, log, deadline) for process, log in processes]
    return {"root": root, "codes": codes, "skip_two": skip_two}


def params(root: Path, name: str, process: int = 0) -> dict[str, np.ndarray]:
    with np.load(root / f"{name}.{process}.npz") as data:
        return {k: data[k] for k in data.files}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def check_ok(runs, name: str) -> None:
    root = runs["root"]
    log = {"1": "one.log", "4": "four.log", "2": "two0.log"}[name]
    assert runs["codes"][name] == [0] * len(runs["codes"][name]), \
        (root / log).read_text()[-3000:]


@pytest.mark.slow
def test_four_devices_match_one_device(runs):
    check_ok(runs, "1")
    check_ok(runs, "4")
    root = runs["root"]
    assert "on 4 devices (cpu) in 1 process" in (root / "four.log").read_text()
    one, four = params(root, "one"), params(root, "four")
    difference = max_difference(one, four)
    print(f"1 vs 4 devices: max |param difference| = {difference:.3g}")
    assert difference <= TOL
    # Something was learnt (the comparison is not between two initialisations).
    rows = (root / "four" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3


@pytest.mark.slow
def test_two_processes_agree(runs):
    if runs["skip_two"]:
        pytest.skip(runs["skip_two"])
    check_ok(runs, "2")
    root = runs["root"]
    log = (root / "two0.log").read_text()
    assert "on 2 devices (cpu) in 2 processes" in log
    # Only process 0 reports and writes the run's files; the checkpoint is shared.
    assert "done at steps" not in (root / "two1.log").read_text()
    assert len((root / "two" / "metrics.jsonl").read_text().splitlines()) == 3
    first, second = params(root, "two", 0), params(root, "two", 1)
    assert max_difference(first, second) == 0.0
    check_ok(runs, "1")
    difference = max_difference(params(root, "one"), first)
    print(f"1 device vs 2 processes: max |param difference| = {difference:.3g}")
    assert difference <= TOL


# --------------------------------------------------------------------------- in-process

def test_local_rows_and_batch_size_check():
    mesh = parallel.data_mesh()
    # One process holds every row of the global batch.
    assert parallel.local_rows(8 * mesh.size, mesh) == slice(0, 8 * mesh.size)
    with pytest.raises(InputError, match=r"sampling.batch_size \(7\) must be a multiple of "
                                         r"the number of devices \(2\)"):
        parallel.check_batch_size(7, SimpleNamespace(size=2))


def test_sampler_rows_are_slices_of_the_whole_batch(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=3, n_test=0)
    clips = load_split(data, "train")
    sampler = Sampler(clips, (1, 4), DataConfig(),
                      SamplingConfig(batch_size=8, hard_negatives=(3, 3, 3, 0),
                                     other_negatives=(0, 0, 0, 4)), seed=5)
    for level in (1, 4):
        whole = sampler.batch(level, 7)
        for rows in (slice(0, 4), slice(4, 8), slice(2, 4)):
            part = sampler.batch(level, 7, rows)
            for key in whole:
                np.testing.assert_array_equal(part[key], whole[key][rows])


def test_global_batch_and_replicate_round_trip():
    mesh = parallel.data_mesh()
    local = {"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3)}
    batch = parallel.global_batch(local, mesh, 8)
    assert batch["x"].sharding == parallel.batch_sharding(mesh)
    np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
    tree = parallel.replicate({"w": np.ones(3), "s": np.int32(2)}, mesh)
    assert tree["w"].sharding == parallel.replicated(mesh)
    assert parallel.replicate(tree, mesh)["w"] is tree["w"]


def test_distributed_without_a_cluster_is_a_one_line_error(monkeypatch, capsys):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    if any(k in os.environ for k in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_ID",
                                     "KUBERNETES_SERVICE_HOST")):
        pytest.skip("a cluster environment is present; jax.distributed would try to join it")
    argv = ["train", "syncers", "--data", "nowhere", "--out", "nowhere", "--distributed"]
    # No coordinator anywhere: jax.distributed refuses before starting anything.
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--distributed: cannot start jax.distributed" in err[0], err
    assert "JAX_COORDINATOR_ADDRESS" in err[0]
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["msync: error: JAX_NUM_PROCESSES: expected an integer; got 'two'"]
    assert cli.build_parser().parse_args(
        ["train", "generator", "--data", "d", "--syncers", "s", "--out", "o",
         "--distributed"]).distributed
