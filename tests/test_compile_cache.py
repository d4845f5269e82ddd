"""The persistent compilation cache: where it lives, what turns it off, that a second process
loads what the first compiled, and that programs compiled under other XLA flags or another JAX
are not loaded."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from motion.app import cli
from syncers.run import compile_cache

REPO = Path(__file__).resolve().parents[1]

# A process that turns the cache on under ROOT, compiles one program and prints its counts.
_COMPILE_ONE = """
import json, sys
sys.path.insert(0, {repo!r})
from syncers.run import compile_cache
folder = compile_cache.enable({root!r})
import jax, jax.numpy as jnp
compile_cache.compile_counts()
jax.jit(lambda x: jnp.tanh(x) @ x.T + 2.0)(jnp.ones((24, 24))).block_until_ready()
print(json.dumps(dict(compile_cache.compile_counts(), folder=str(folder))))
"""


def _compile_one(root: Path, xla_flags: str = "") -> dict:
    env = {k: v for k, v in os.environ.items()
           if k != compile_cache.OFF_VARIABLE and not k.startswith("JAX_COMPILATION_CACHE")}
    env["XLA_FLAGS"] = xla_flags
    done = subprocess.run([sys.executable, "-c", _COMPILE_ONE.format(repo=str(REPO),
                                                                    root=str(root))],
                          env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_what_the_first_compiled_and_other_xla_flags_compile_again(
        tmp_path):
    first = _compile_one(tmp_path)
    assert first["compiled"] >= 1 and first["loaded"] == 0
    assert Path(first["folder"]).is_relative_to(tmp_path) and any(Path(first["folder"]).iterdir())
    second = _compile_one(tmp_path)
    assert second == dict(first, compiled=0, loaded=first["compiled"])
    # XLA flags are in JAX's key: the same program under another flag is compiled, not loaded.
    other_flags = _compile_one(tmp_path, "--xla_cpu_enable_fast_math=true")
    assert other_flags["compiled"] >= 1 and other_flags["loaded"] == 0


def test_each_jax_version_and_host_cpu_has_its_own_folder(monkeypatch, tmp_path):
    here = compile_cache.cache_dir(tmp_path)
    assert here.parent.name == (f"jax-{compile_cache.metadata.version('jax')}_"
                                f"jaxlib-{compile_cache.metadata.version('jaxlib')}")
    monkeypatch.setattr(compile_cache.metadata, "version", lambda package: "0.0.1")
    other_jax = compile_cache.cache_dir(tmp_path)
    assert other_jax.parent.name == "jax-0.0.1_jaxlib-0.0.1" and other_jax.name == here.name
    monkeypatch.setattr(compile_cache, "_host_cpu", lambda: "x86_64-otherfeatures")
    assert compile_cache.cache_dir(tmp_path).name == "x86_64-otherfeatures"


def test_the_folder_is_under_xdg_cache_home_or_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.cache_dir().parents[1] == tmp_path / "msync" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")      # not absolute: ignored
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.cache_dir().parents[1] == tmp_path / "home" / ".cache" / "msync" / "jax"


@pytest.mark.parametrize("value, off", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_the_environment_variable_turns_it_off(monkeypatch, value, off):
    monkeypatch.setenv(compile_cache.OFF_VARIABLE, value)
    assert compile_cache.disabled_by_environment() is off


def test_off_changes_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv(compile_cache.OFF_VARIABLE, raising=False)
    assert compile_cache.enable(tmp_path, off=True) is None
    monkeypatch.setenv(compile_cache.OFF_VARIABLE, "1")
    assert compile_cache.enable(tmp_path) is None
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ and not any(tmp_path.iterdir())


def test_a_folder_that_cannot_be_written_leaves_the_cache_off_with_one_warning(
        monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv(compile_cache.OFF_VARIABLE, raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert compile_cache.enable(blocker) is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("msync: warning: ")
    assert "cannot write the compilation cache" in lines[0] and "--no-cache" in lines[0]
    assert "JAX_COMPILATION_CACHE_DIR" not in os.environ


def test_msync_no_cache_is_a_top_level_option():
    args = cli.build_parser().parse_args(["--no-cache", "generate", "--out", "x.mp4"])
    assert args.no_cache is True
    assert cli.build_parser().parse_args(["generate", "--out", "x.mp4"]).no_cache is False
