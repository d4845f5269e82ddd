"""Hostile and odd input (docs/design.md, "CLI contract"): a crafted model directory, an
unwritable output, a malformed dataset clip, a killed run. Each is one line and exit 2 — or,
for a killed run, nothing left behind — never a hang, a traceback or an orphan process.

The crafted models are the bundled demo model with one change each; every command that takes
``--model`` is run on them in a child process under a memory cap and a timeout, so a model that
makes msync allocate without bound fails the test instead of the machine.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from syncer_data import make_dataset

from motion.app import cli, ui
from motion.talking_head import DEMO_MODEL_DIR
from syncers.data import dataset
from syncers.run import compile_cache
from syncers.run.errors import InputError
from syncers.run.outputs import leftovers

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP = 6 * 2 ** 30            # address space of the child: JAX's CPU client fits in it
SECONDS = 240                       # all crafted models of one command, JAX start-up included


def _with_config(**change):
    def craft(model: Path) -> None:
        meta = json.loads((model / "model.json").read_text())
        meta["config"].update(change)
        (model / "model.json").write_text(json.dumps(meta))
    return craft


def _replace(name: str, data: bytes):
    def craft(model: Path) -> None:
        (model / name).write_bytes(data)
    return craft


def _link(name: str, target: str | None):
    def craft(model: Path) -> None:
        (model / name).unlink()
        os.symlink(model / name if target is None else target, model / name)
    return craft


def _grow_params(model: Path) -> None:
    with open(model / "params.msgpack", "ab") as params:
        params.write(b"\0" * 2_000_000)


# name -> (how the demo model is changed, what the one line says)
CRAFTED = {
    "huge_layers": (_with_config(n_layers=1_000_000_000),
                    "model.json: config.n_layers must be from 1 to 256; got 1000000000"),
    "huge_layers_float": (_with_config(n_layers=1e9),
                          "model.json: config.n_layers must be from 1 to 256; got 1000000000"),
    "too_big_for_memory": (_with_config(d_model=16384, d_ff=65536, n_layers=64),  # 0.8 TB
                           "more than this machine can hold"),
    "nested": (_replace("model.json", b"[" * 200_000), "model.json: JSON nested deeper than"),
    "huge_json": (_replace("model.json", b" " * 17_000_000),
                  "model.json: is 17.0 MB; at most 16.0 MB is read here"),
    "json_is_a_device": (_link("model.json", "/dev/zero"),
                         "model.json: not a regular file or directory"),
    "json_loops": (_link("model.json", None), "model.json: a symbolic link loop"),
    "params_dangle": (_link("params.msgpack", "/nonexistent/params.msgpack"),
                      "params.msgpack: a dangling symbolic link"),
    "params_garbage": (_replace("params.msgpack", b"\x00" * 100),
                       "params.msgpack: cannot be read as generator parameters"),
    "params_too_long": (_grow_params, "params.msgpack: is "),
}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """``{name: model directory}`` of every crafted model, plus a face image and speech."""
    root = tmp_path_factory.mktemp("crafted")
    models = {}
    for name, (craft, _) in CRAFTED.items():
        models[name] = root / name
        shutil.copytree(DEMO_MODEL_DIR, models[name])
        craft(models[name])
    models["self_loop"] = root / "self_loop"
    os.symlink(models["self_loop"], models["self_loop"])
    models["dangling"] = root / "dangling"
    os.symlink(root / "nothing-there", models["dangling"])
    from PIL import Image
    from skimage import data
    Image.fromarray(data.astronaut()[10:250, 110:350]).save(root / "face.png")
    import soundfile
    speech = np.sin(np.linspace(0, 400, 16000)).astype(np.float32) * 0.3
    soundfile.write(root / "speech.wav", speech, 16000)
    return root, models


EXPECTED = {name: line for name, (_, line) in CRAFTED.items()} | {
    "self_loop": "a symbolic link loop (the link points back at itself)",
    "dangling": "a dangling symbolic link"}

_DRIVER = """
import contextlib, io, json, sys
from motion.app import cli
for name, argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    print(json.dumps([name, code, err.getvalue()]), flush=True)
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _run_capped(runs: list) -> dict:
    """Each ``(name, argv)`` through ``cli.main`` in one child process under the memory cap and
    the timeout: ``{name: (exit code, stderr)}``."""
    result = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(runs)], cwd=REPO,
                            capture_output=True, text=True, timeout=SECONDS, check=False,
                            preexec_fn=_cap_memory,
                            env=os.environ | {"PYTHONPATH": os.fspath(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    return {name: (code, err) for name, code, err in map(json.loads, result.stdout.splitlines())}


def _assert_one_line(name: str, code: int, err: str) -> None:
    lines = [line for line in err.splitlines() if not line.startswith("msync: warning:")]
    assert code == 2, (name, err)
    assert len(lines) == 1 and lines[0].startswith("msync: error: "), (name, err)
    assert EXPECTED[name] in lines[0], (name, lines[0])


@pytest.mark.parametrize("command", ["generate", "stream"])
def test_crafted_models_are_one_line_under_a_memory_cap(crafted, tmp_path, command):
    root, models = crafted
    out = tmp_path / "out.mp4"
    runs = []
    for name, model in models.items():
        argv = [command, "--model", os.fspath(model), "--image", os.fspath(root / "face.png"),
                "--audio", os.fspath(root / "speech.wav"), "--out", os.fspath(out)]
        runs.append((name, argv))
    results = _run_capped(runs)
    assert set(results) == set(models)
    for name, (code, err) in results.items():
        _assert_one_line(name, code, err)
    assert not out.exists() and not leftovers(out)


def test_the_page_refuses_crafted_models_at_start_with_the_same_line(crafted, tmp_path):
    _, models = crafted
    for name, model in models.items():
        with pytest.raises(InputError) as refused:
            ui.page_config([os.fspath(model)], [], 10.0, tmp_path)
        assert EXPECTED[name] in str(refused.value), (name, str(refused.value))
        # and the page's status box says it as the CLI does, in the user's words
        assert EXPECTED[name].split(": ")[-1] in ui.readable(refused.value, {})


def test_an_unwritable_output_is_refused_before_any_work(capsys, monkeypatch):
    from motion import talking_head

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")
    monkeypatch.setattr(talking_head, "load", no_model)
    assert cli.main(["generate", "--out", "/proc/x.mp4"]) == 2
    err = capsys.readouterr().err
    assert err == "msync: error: /proc: the folder for --out is not writable " \
                  "(No such file or directory)\n", err


def test_a_clip_with_other_keypoints_is_one_line_for_training(tmp_path, capsys):
    root = make_dataset(tmp_path / "ds", n_train=3, n_test=2, n_frames=60)
    manifest = dataset.read_manifest(root)
    info = manifest.clips("train")[0]
    path = dataset.clip_path(root, "train", info.clip_id)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    arrays["keypoints"] = arrays["keypoints"][:, :3]                   # [T, 3, 6]
    np.savez(path, **arrays)
    code = cli.main(["train", "syncers", "--data", os.fspath(root), "--out",
                     os.fspath(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"msync: error: {path}: keypoints must have shape [·, 10, 6]; got "
                   f"[{info.n_frames}, 3, 6]"], err


# --------------------------------------------------------------------------- killed runs

def _ffmpeg_writing(target: Path) -> list[str]:
    """The processes whose command line names a temporary file of ``target`` (``ps``)."""
    table = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True,
                           check=True).stdout
    prefix = f".{target.stem}."
    return [line for line in table.splitlines()
            if prefix in line and ".partial" in line and "ps -eo" not in line]


def _generate(out: Path, audio: Path, image: Path, cache: Path) -> subprocess.Popen:
    """``msync generate`` in a child; its compilation cache in ``cache`` (this test's own
    folder, empty at its start), so the runs after the first that compiled load its programs
    instead of compiling them again: what they leave behind is the same either way."""
    env = {k: v for k, v in os.environ.items() if k != compile_cache.OFF_VARIABLE}
    return subprocess.Popen([sys.executable, "-m", "motion.app.cli", "generate", "--image",
                             os.fspath(image), "--audio", os.fspath(audio),
                             "--out", os.fspath(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            env=env | {"PYTHONPATH": os.fspath(REPO),
                                       "XDG_CACHE_HOME": os.fspath(cache)})


def _size(path: Path) -> int:
    """Bytes in ``path``; 0 once it is gone (a run removes what killed runs left)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _wait_for(condition, process, seconds=300.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_generate_leaves_nothing_behind(crafted, tmp_path):
    """SIGKILL at three moments — while starting (before any output), as soon as the encoder
    has its partial file, and once it has written into it: no ffmpeg is left writing (``ps``),
    and the next run of the same output removes what the killed ones left and leaves no
    partial file of its own; SIGTERM leaves nothing at all."""
    root, _ = crafted
    import soundfile
    speech = np.tile(soundfile.read(REPO / "motion" / "assets" / "speech.flac",
                                    dtype="float32")[0], 2)            # 12 s: time to kill
    soundfile.write(tmp_path / "speech.wav", speech, 16000)
    out = tmp_path / "talk.mp4"
    cache = tmp_path / "cache"
    moments = {
        "starting": lambda: True,
        "partial made": lambda: bool(leftovers(out)),
        "partial written": lambda: any(_size(p) > 20_000 for p in leftovers(out)),
    }
    for moment, reached in moments.items():
        process = _generate(out, tmp_path / "speech.wav", root / "face.png", cache)
        _wait_for(reached, process)
        process.send_signal(signal.SIGKILL)
        process.wait()
        time.sleep(0.5)                                   # the kernel's parent-death signal
        assert _ffmpeg_writing(out) == [], moment
    assert leftovers(out), "no kill left a partial file: the moments were not reached"
    # SIGTERM, once the partial is written: interrupted as by Ctrl-C, the killed runs'
    # partials (removed at its start) and its own (on the way out) gone, its encoder ended
    stale = set(leftovers(out))
    process = _generate(out, tmp_path / "speech.wav", root / "face.png", cache)
    _wait_for(lambda: any(p not in stale and _size(p) > 20_000 for p in leftovers(out)), process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert process.stderr.read().decode().strip().splitlines()[-1] == "msync: interrupted"
    assert leftovers(out) == [] and _ffmpeg_writing(out) == []
    done = _generate(out, tmp_path / "speech.wav", root / "face.png", cache)
    assert done.wait(timeout=600) == 0, done.stderr.read().decode()[-2000:]
    assert out.is_file() and leftovers(out) == []
    assert _ffmpeg_writing(out) == []


def test_a_live_writers_partial_is_not_removed(tmp_path):
    """The clean-up removes only what a dead run left: a partial another live run still
    writes (its lock held) stays."""
    from syncers.run.outputs import published, remove_stale

    out = tmp_path / "x.bin"
    with published(out) as live:
        live.write_bytes(b"live")
        dead = tmp_path / ".x.abcdefgh.partial.bin"
        dead.write_bytes(b"dead")                          # no process holds it
        assert remove_stale(out) == [dead]
        assert live.exists() and not dead.exists()
    assert out.read_bytes() == b"live" and leftovers(out) == []
