"""The bench scripts (bench/): each still imports against the code it measures, so a renamed
name fails here, not when someone needs its figure."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
OPTIONAL = ("torch", "face_alignment", "gradio", "playwright")   # the torch and ui extras


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCH.glob("*.py")
                                          if p.stem != "__init__"))
def test_every_bench_script_imports(script):
    try:
        module = importlib.import_module(f"bench.{script}")
    except ModuleNotFoundError as err:
        if err.name in OPTIONAL:
            pytest.skip(f"bench/{script}.py needs {err.name} (an optional extra)")
        raise
    assert module.__doc__, f"bench/{script}.py says nowhere what it measures"
