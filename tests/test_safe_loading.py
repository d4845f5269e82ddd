"""Safe loading: files msync reads that could carry code are read without executing anything.

A ``.pth.tar`` whose pickle would create a marker file, and a clip ``.npz`` holding an object
array that would do the same, are refused through the CLI with a one-line error and exit 2,
and the marker is never created (a positive control shows the payloads do run when unpickled
unsafely). A scan of the package sources keeps every ``torch.load``/``np.load`` safe.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from syncer_data import make_dataset

from motion.app import cli
from syncers.data.dataset import clip_path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("motion", "syncers", "render", "bench")


class Payload:
    """Unpickling this creates ``marker`` (stands for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(params=["zip", "legacy"])
def evil_checkpoint(request, tmp_path):
    torch = pytest.importorskip("torch")   # optional (msync[torch]); the other tests need none
    marker = tmp_path / "pwned"
    path = tmp_path / "vox-cpk.pth.tar"
    torch.save({"kp_detector": {"weight": Payload(marker)}, "generator": {}}, path,
               _use_new_zipfile_serialization=request.param == "zip")
    # Positive control: an unrestricted load would run the payload.
    control = tmp_path / "control"
    torch.save({"x": Payload(control)}, tmp_path / "control.pth.tar",
               _use_new_zipfile_serialization=request.param == "zip")
    torch.load(tmp_path / "control.pth.tar", weights_only=False)
    assert control.exists()
    return path, marker


def test_render_convert_refuses_a_code_running_checkpoint(evil_checkpoint, tmp_path, capsys):
    path, marker = evil_checkpoint
    assert cli.main(["render", "convert", "--checkpoint", str(path), "--config",
                     str(REPO / "configs" / "render" / "vox-256.yaml"),
                     "--out", str(tmp_path / "converted")]) == 2
    line = one_line_error(capsys)
    assert line.startswith(f"msync: error: {path}: refused") and "open" in line, line
    assert not marker.exists()
    assert not (tmp_path / "converted").exists()


def test_data_prepare_refuses_a_code_running_checkpoint(evil_checkpoint, tmp_path, capsys):
    path, marker = evil_checkpoint
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"never read: the checkpoint is refused first")
    assert cli.main(["data", "prepare", "--videos", str(videos), "--out",
                     str(tmp_path / "data"), "--fomm-checkpoint", str(path)]) == 2
    err = capsys.readouterr().err   # prepare's progress bar may share stderr
    errors = [line for line in re.split(r"[\r\n]", err) if "msync: error" in line]
    assert len(errors) == 1 and "Traceback" not in err, err
    line = errors[0]
    assert f"{path}: refused" in line, line
    assert not marker.exists()


def test_object_array_in_a_clip_is_refused(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", n_train=3, n_test=1)
    marker = tmp_path / "pwned"
    clip = clip_path(data, "train", "train001")
    with np.load(clip, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["meta"] = np.array([Payload(marker)], dtype=object)
    np.savez(clip, **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):    # numpy's own refusal
        np.load(clip)["meta"]
    assert cli.main(["train", "syncers", "--data", str(data), "--out",
                     str(tmp_path / "run")]) == 2
    line = one_line_error(capsys)
    assert line == (f"msync: error: {clip}: holds object arrays, which msync refuses to load "
                    "(they could execute code)"), line
    assert not marker.exists()
    # Positive control: an unrestricted load would run the payload.
    np.load(clip, allow_pickle=True)["meta"]
    assert marker.exists()


def _calls(source: str, name: str) -> list[str]:
    """The argument text of every ``name(...)`` call in ``source``."""
    calls = []
    for match in re.finditer(re.escape(name) + r"\s*\(", source):
        depth, i = 1, match.end()
        while depth and i < len(source):
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        calls.append(source[match.end():i - 1])
    return calls


def test_package_sources_never_load_unsafely():
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    assert files
    problems = []
    for path in files:
        source = path.read_text()
        where = path.relative_to(REPO)
        for args in _calls(source, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                problems.append(f"{where}: torch.load({args}) without weights_only=True")
        for args in _calls(source, "np.load") + _calls(source, "numpy.load"):
            if not re.search(r"allow_pickle\s*=\s*False", args):
                problems.append(f"{where}: np.load({args}) without allow_pickle=False")
        for risky in ("pickle.load", "pickle.loads", "pickle.Unpickler", "joblib.load",
                      "dill.load", "cloudpickle.load", "torch.jit.load"):
            if _calls(source, risky):
                problems.append(f"{where}: calls {risky}")
    assert problems == []
