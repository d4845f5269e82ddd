"""torch and face-alignment are optional (the ``msync[torch]`` extra): no package module imports
them at import time, and the commands that need them say, in one line, how to install them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from motion.app import cli

REPO = Path(__file__).resolve().parents[1]
INSTALL_HINT = "pip install 'msync[torch]'"


def test_no_package_module_imports_torch_or_face_alignment():
    code = (
        "import importlib, pkgutil, sys\n"
        "for name in ('syncers', 'motion', 'render'):\n"
        "    package = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'face_alignment')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "msync: error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_render_convert_without_torch_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)      # import torch now fails
    checkpoint = tmp_path / "vox-cpk.pth.tar"
    checkpoint.write_bytes(b"not read: torch is missing")
    assert cli.main(["render", "convert", "--checkpoint", str(checkpoint), "--config",
                     str(REPO / "configs" / "render" / "vox-256.yaml"),
                     "--out", str(tmp_path / "converted")]) == 2
    line = _one_error_line(capsys)
    assert "needs torch" in line and INSTALL_HINT in line, line
    assert not (tmp_path / "converted").exists()


def test_prepare_landmarks_without_face_alignment_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "face_alignment", None)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"never read: the options are refused first")
    assert cli.main(["data", "prepare", "--videos", str(videos), "--out", str(tmp_path / "data"),
                     "--landmarker", "face-alignment"]) == 2
    line = _one_error_line(capsys)
    assert "needs face_alignment" in line and INSTALL_HINT in line, line
