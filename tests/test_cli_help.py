"""Every subcommand's --help: examples that parse, one naming style, no stray formatting.

The subcommands are read off the real parser (`sim.cli.build_parser`), so a subcommand added
later is checked without touching this file.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import build_parser

ROOT = Path(__file__).parents[1]


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


SUBCOMMANDS = subcommands()


def test_the_expected_subcommands_are_there() -> None:
    assert {"serve", "validate", "sim", "load", "report", "compare", "calibrate", "demo"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_help_has_examples_that_parse_and_consistent_names(name: str) -> None:
    parser = SUBCOMMANDS[name]
    text = parser.format_help()
    assert "%%" not in text and "%(" not in text, f"smsload {name} --help shows a literal %"
    usage, description = text.split("\n\n", 2)[:2]
    assert not description.lstrip().startswith("`"), f"smsload {name}: the description starts with a usage line"
    assert len(description.split()) >= 8, f"smsload {name}: say what the command does"
    # Positionals are named in capitals (SCENARIO, RUN, RUN_A), as the descriptions refer to them.
    positionals = [a for a in parser._actions if not a.option_strings]
    for action in positionals:
        shown = action.metavar or action.dest
        assert isinstance(shown, str) and shown.isupper(), f"smsload {name}: positional {shown!r} is not upper case"
    assert "examples:" in text, f"smsload {name} --help has no examples"
    examples = [line.strip() for line in text.split("examples:", 1)[1].splitlines() if line.strip()]
    assert 1 <= len(examples) <= 3
    for example in examples:
        words = shlex.split(example.split("  #")[0], comments=True)
        words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]  # an environment variable before the command
        assert words[:2] == ["smsload", name], example
        parser.parse_args(words[2:])  # every example is a valid command line (argparse exits 2 if not)


def test_help_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "report", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0 and "95% intervals" in done.stdout and "examples:" in done.stdout


def test_scenario_positionals_share_one_name() -> None:
    names = {
        (a.metavar or a.dest)
        for p in SUBCOMMANDS.values()
        for a in p._actions
        if not a.option_strings and "scenario" in (a.help or "").lower()
    }
    assert names == {"SCENARIO"}


def test_help_imports_no_heavy_library() -> None:
    # `smsload --help` and every subcommand's parser are built without what the commands run on:
    # a command imports its own libraries when it runs.
    heavy = ["pydantic", "pandas", "numpy", "numba", "simpy", "httpx", "starlette", "locust", "rich", "yaml"]
    code = "import sys; from sim.cli import build_parser; build_parser(); print(*set(sys.argv[1:]) & set(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code, *heavy], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and done.stdout.split() == [], done.stdout + done.stderr
