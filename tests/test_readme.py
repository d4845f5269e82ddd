"""The command-line synopses in README.md ("## Command line") and docs/design.md ("## CLI
contract") against the parser: every command and every option of ``msync``, nothing the parser
lacks, brackets around exactly the optional flags, the choices the parser accepts, and a
number shown as a flag's value is its default. The
help itself is checked here too: every option says what it does, every command ends with
examples."""
from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from motion.app import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [(ROOT / "README.md", "## Command line"), (ROOT / "docs" / "design.md", "## CLI contract")]
OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def synopsis(path: Path, heading: str) -> str:
    """The first fenced block under ``heading`` (before the next ``## `` heading)."""
    text = path.read_text()
    assert heading + "\n" in text, f"{path.name} has no {heading!r} heading"
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", section, re.DOTALL | re.MULTILINE)
    assert blocks, f"{path.name}: no fenced block under {heading!r}"
    return blocks[0]


def entries(block: str) -> dict[tuple[str, ...], str]:
    """``{command words: entry text}``: a line starting with ``msync`` starts an entry, the
    indented lines after it continue it; ``()`` is the global entry (``msync [--debug] ...``)."""
    out: dict[tuple[str, ...], str] = {}
    key = None
    for line in block.splitlines():
        if line.startswith("msync"):
            words = []
            for token in line.split()[1:]:
                if not re.fullmatch(r"[a-z]+", token):
                    break
                words.append(token)
            key = tuple(words)
            assert key not in out, f"two entries for msync {' '.join(key)}"
            out[key] = line
        elif line.strip():
            assert key is not None and line.startswith(" "), f"stray line {line!r}"
            out[key] += " " + line.strip()
    return out


def documented_options(text: str) -> dict[str, tuple[bool, str | None]]:
    """``{--option: (optional, the value shown after it)}``; optional = inside brackets."""
    out = {}
    for match in OPTION.finditer(text):
        before = text[:match.start()]
        optional = before.count("[") > before.count("]")
        value = re.match(r"\s+([^\s\[\]()]+)", text[match.end():])
        shown = value.group(1) if value and not value.group(1).startswith("-") else None
        assert match.group() not in out, f"{match.group()} shown twice in {text!r}"
        out[match.group()] = (optional, shown)
    return out


def leaf_parsers(parser: argparse.ArgumentParser, path=()):
    """``(command words, parser)`` of every command that runs, and ``((), msync)`` itself."""
    if not path:
        yield (), parser
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        for name, sub in action.choices.items():
            if sub._subparsers is None:
                yield path + (name,), sub
            else:
                yield from leaf_parsers(sub, path + (name,))


def parser_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``{--option: action}`` of a command (help left out; subcommands are not options)."""
    out = {}
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        long = [s for s in action.option_strings if s.startswith("--")]
        assert long, f"{parser.prog}: {action.dest} has no --long name"
        out[long[0]] = action
    return out


def required(parser: argparse.ArgumentParser, action: argparse.Action) -> bool:
    """Required on its own, or one of a required either/or group (shown in parentheses)."""
    return action.required or any(action in g._group_actions and g.required
                                  for g in parser._mutually_exclusive_groups)


PARSER = cli.build_parser()
COMMANDS = dict(leaf_parsers(PARSER))


@pytest.mark.parametrize("path, heading", DOCS, ids=[p.name for p, _ in DOCS])
def test_synopsis_lists_every_command_and_nothing_else(path, heading):
    documented = entries(synopsis(path, heading))
    assert sorted(documented) == sorted(COMMANDS), (
        f"{path.name}: commands missing {sorted(set(COMMANDS) - set(documented))}, "
        f"unknown {sorted(set(documented) - set(COMMANDS))}")


@pytest.mark.parametrize("path, heading", DOCS, ids=[p.name for p, _ in DOCS])
@pytest.mark.parametrize("command", sorted(COMMANDS), ids=lambda c: " ".join(c) or "msync")
def test_synopsis_shows_every_option_as_the_parser_has_it(path, heading, command):
    documented = entries(synopsis(path, heading))
    if command not in documented:
        pytest.fail(f"{path.name}: no entry for msync {' '.join(command)}")
    parser = COMMANDS[command]
    shown, actual = documented_options(documented[command]), parser_options(parser)
    where = f"{path.name}, msync {' '.join(command)}"
    assert sorted(shown) == sorted(actual), (
        f"{where}: missing {sorted(set(actual) - set(shown))}, "
        f"not in the parser {sorted(set(shown) - set(actual))}")
    for option, (optional, value) in shown.items():
        action = actual[option]
        assert optional != required(parser, action), (
            f"{where}: {option} is {'optional' if not required(parser, action) else 'required'} "
            "(optional flags go in brackets, required ones outside)")
        if action.nargs == 0:
            assert value is None, f"{where}: {option} takes no value; shown with {value!r}"
        else:
            assert value is not None, f"{where}: {option} takes a value; show one"
        if value is not None and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):   # the default
            assert float(value) == float(action.default), (
                f"{where}: {option} shows {value}; its default is {action.default}")
        if action.choices is not None and not isinstance(action.choices, dict):
            assert value.split("|") == [str(c) for c in action.choices], (
                f"{where}: {option} accepts {'|'.join(map(str, action.choices))}; shown {value}")


@pytest.mark.parametrize("command", [c for c in sorted(COMMANDS) if c],
                         ids=lambda c: " ".join(c))
def test_help_describes_every_option_and_ends_with_examples(command):
    parser = COMMANDS[command]
    text = parser.format_help()
    for option, action in parser_options(parser).items():
        assert action.help and len(action.help) > 10, f"{parser.prog} {option}: no help"
        if action.default not in (None, False, [], {}) and action.nargs != 0:
            assert "default" in action.help, f"{parser.prog} {option}: help names no default"
    assert "\nexamples:\n  msync " in text, f"{parser.prog}: no examples"
    for line in text.split("\nexamples:\n", 1)[1].splitlines():
        if line.startswith("  msync "):
            argv = line.split("#")[0].split()[1:]
            if "|" not in argv:
                PARSER.parse_args([a.strip("'") for a in argv])   # the example parses


def test_generate_help_names_the_bundled_inputs_and_the_crop():
    text = " ".join(COMMANDS[("generate",)].format_help().split())
    for words in ("astronaut", "bundled", "speech", "square crop around the head",
                  "--crop-scale", "--size"):
        assert words in text
