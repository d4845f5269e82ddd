"""The CLI's error policy: one line and exit 2 for bad input, exit 1 for bugs, no tracebacks."""
import errno
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from motion.app import cli
from syncers.run.errors import InputError


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "train", "generate", "evaluate", "analyze", "demo", "motion",
                    "render"):
        assert command in out


def _leaf_parsers(parser):
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            if sub._subparsers is None:
                yield sub
            else:
                yield from _leaf_parsers(sub)


def test_every_command_names_a_function_that_exists():
    """Each command's handler imports its module only when it runs; every target must exist."""
    targets = [sub.get_default("handler").target for sub in _leaf_parsers(cli.build_parser())]
    assert len(targets) == 17
    for target in targets:
        module, function = target.split(":")
        assert module.startswith("motion.app."), target
        assert callable(getattr(importlib.import_module(module), function)), target


def test_bad_argument_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "synth", "--out", "x", "--coupling", "tail=1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected head=F,lips=F" in err


def test_input_error_and_internal_error(monkeypatch, capsys):
    def bad_input(args):
        raise InputError("some/file.wav", "the audio is empty")

    def bug(args):
        raise ZeroDivisionError("oops")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["demo"].set_defaults(handler=bad_input)
    assert cli.main(["demo", "--out", "x"]) == 2
    assert capsys.readouterr().err == "msync: error: some/file.wav: the audio is empty\n"
    parser._subparsers._group_actions[0].choices["demo"].set_defaults(handler=bug)
    assert cli.main(["demo", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "ZeroDivisionError: oops" in err
    assert cli.main(["--debug", "demo", "--out", "x"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_path_the_system_refuses_is_bad_input_other_os_errors_are_bugs(monkeypatch, capsys,
                                                                           tmp_path):
    """An --out that is a file (any command's mkdir) is one line, exit 2; an OS error that
    names no path, or not one of the user's to fix, stays an internal error."""
    (tmp_path / "taken").write_text("")

    def mkdir_out(args):
        Path(args.out).mkdir(parents=True, exist_ok=True)

    def no_path(args):
        raise OSError(errno.EIO, "Input/output error")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    demo = parser._subparsers._group_actions[0].choices["demo"]
    demo.set_defaults(handler=mkdir_out)
    assert cli.main(["demo", "--out", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err == f"msync: error: {tmp_path / 'taken'}: File exists\n"
    assert cli.main(["demo", "--out", str(tmp_path / "taken" / "sub")]) == 2
    assert capsys.readouterr().err.endswith(": Not a directory\n")
    demo.set_defaults(handler=no_path)
    assert cli.main(["demo", "--out", "x"]) == 1
    assert "internal error: OSError" in capsys.readouterr().err


def test_console_script_runs_as_a_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "motion.app.cli", "evaluate", "--data",
                             str(tmp_path / "none"), "--syncers", str(tmp_path / "none"),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_a_terminal_hears_at_once_that_msync_is_loading_and_a_log_does_not(monkeypatch, capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    handler = cli._command("builtins:len")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    handler([])
    assert terminal.getvalue() == "msync: loading JAX and the models...\n"
    monkeypatch.undo()
    handler([])
    assert capsys.readouterr().err == ""
