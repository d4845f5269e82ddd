"""Typed YAML configs: defaults, overrides, unknown keys and type errors, and the round trip."""
import dataclasses
from typing import Literal

import pytest

from syncers.run import config
from syncers.run.errors import InputError


@dataclasses.dataclass(frozen=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.0, 0.999)


@dataclasses.dataclass(frozen=True)
class Run:
    steps: int = 10
    objective: Literal["infonce", "bce"] = "infonce"
    seed: int | None = None
    optim: Optim = Optim()
    name: str = "x"
    learnable: bool = True


def test_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 1e-4\n")
    run = config.load(Run, path, ["optim.betas=[0.5, 0.9]", "objective=bce", "seed=3"])
    assert run == Run(steps=20, objective="bce", seed=3, optim=Optim(lr=1e-4, betas=(0.5, 0.9)))
    assert config.load(Run) == Run()


def test_dump_then_load_is_identity(tmp_path):
    run = Run(steps=7, optim=Optim(lr=2e-5), learnable=False, seed=1)
    config.dump(run, tmp_path / "config.yaml")
    assert config.load(Run, tmp_path / "config.yaml") == run


@pytest.mark.parametrize("overrides,message", [
    (["no.such=1"], r"--set: unknown config key 'no\.such'"),
    (["optim.nope=1"], r"--set: unknown config key 'optim\.nope'"),
    (["steps"], "expected key=value"),
    (["steps=ten"], "steps must be an integer; got 'ten'"),
    (["steps=1.5"], "steps must be an integer"),
    (["objective=mse"], "objective must be one of infonce, bce; got 'mse'"),
    (["learnable=maybe"], "learnable must be true or false"),
    (["optim.lr=fast"], r"optim\.lr must be a number"),
])
def test_bad_overrides(overrides, message):
    with pytest.raises(InputError, match=message):
        config.load(Run, None, overrides)


def test_bad_files(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stepz: 3\n")
    with pytest.raises(InputError, match=r"c\.yaml: unknown config key 'stepz'"):
        config.load(Run, path)
    path.write_text("optim: {lr: [1}\n")
    with pytest.raises(InputError, match=r"c\.yaml: not valid YAML"):
        config.load(Run, path)
    path.write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="must be a mapping"):
        config.load(Run, path)
    with pytest.raises(InputError, match=r"missing\.yaml: cannot read config"):
        config.load(Run, tmp_path / "missing.yaml")
