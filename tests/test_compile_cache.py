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


def _traced_demo(traces: list):
    """A fresh jitted function (its own trace cache) that counts its tracings, and arguments."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def fn(tree, scale):
        traces.append(1)            # runs only while JAX traces fn
        return jnp.tanh(tree["x"]) * scale + tree["y"].sum()
    return fn, ({"x": jnp.arange(6.0).reshape(2, 3), "y": jnp.ones(4)}, jnp.float32(2.0))


def test_traced_jit_stores_the_program_and_later_ones_call_it_without_tracing(monkeypatch,
                                                                               tmp_path):
    import numpy as np
    monkeypatch.setattr(compile_cache, "_enabled", [tmp_path])
    monkeypatch.setattr(compile_cache, "_traced", {})
    fn, args = _traced_demo([])
    expected = np.asarray(fn(*args))
    traces: list = []
    first = compile_cache.traced_jit(_traced_demo(traces)[0], args, "demo", static="a")
    np.testing.assert_array_equal(np.asarray(first(*args)), expected)
    stored = list((tmp_path / "traced").glob("demo-*.jaxexport"))
    assert len(traces) == 1 and len(stored) == 1
    assert compile_cache.traced_jit(_traced_demo(traces)[0], args, "demo", static="a") is first
    monkeypatch.setattr(compile_cache, "_traced", {})              # as a new process would
    again = compile_cache.traced_jit(_traced_demo(traces)[0], args, "demo", static="a")
    np.testing.assert_array_equal(np.asarray(again(*args)), expected)
    assert len(traces) == 1                                          # loaded, not traced
    # another static option or other shapes are other programs
    compile_cache.traced_jit(_traced_demo(traces)[0], args, "demo", static="b")
    wider = ({"x": np.zeros((2, 4), np.float32), "y": np.ones(4, np.float32)}, np.float32(2.0))
    compile_cache.traced_jit(_traced_demo(traces)[0], wider, "demo", static="a")
    assert len(traces) == 3 and len(list((tmp_path / "traced").glob("demo-*"))) == 3
    # a damaged entry is exported again, not fatal
    stored[0].write_bytes(b"not a program")
    monkeypatch.setattr(compile_cache, "_traced", {})
    rebuilt = compile_cache.traced_jit(_traced_demo(traces)[0], args, "demo", static="a")
    np.testing.assert_array_equal(np.asarray(rebuilt(*args)), expected)
    assert len(traces) == 4 and stored[0].read_bytes() != b"not a program"


def test_traced_jit_without_the_cache_is_plain_jit_and_stores_nothing(monkeypatch, tmp_path):
    import numpy as np
    monkeypatch.setattr(compile_cache, "_enabled", [None])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    traces: list = []
    fn, args = _traced_demo(traces)
    draw = compile_cache.traced_jit(fn, args, "demo")
    assert draw is fn
    np.testing.assert_allclose(np.asarray(draw(*args)), np.tanh(np.arange(6.0).reshape(2, 3)) * 2
                               + 4.0, rtol=1e-6)
    assert not any(tmp_path.rglob("*.jaxexport"))


def test_the_source_fingerprint_follows_msync_s_files(monkeypatch, tmp_path):
    for package in ("motion", "render", "syncers"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "a.py").write_text("x = 1\n")
    (tmp_path / "syncers" / "run").mkdir()
    fake = tmp_path / "syncers" / "run" / "compile_cache.py"
    fake.write_text("")
    monkeypatch.setattr(compile_cache, "__file__", str(fake))
    compile_cache._source_fingerprint.cache_clear()
    try:
        before = compile_cache._source_fingerprint()
        (tmp_path / "render" / "a.py").write_text("x = 2\n")
        compile_cache._source_fingerprint.cache_clear()
        assert compile_cache._source_fingerprint() != before
    finally:
        compile_cache._source_fingerprint.cache_clear()
