"""A corpus of malformed scenario files: each one is exit code 2 and a line naming the field.

tests/fixtures/bad_scenarios/ holds one file per mistake (wrong types, booleans for numbers,
unknown keys, absurd sizes, overflowing distributions, YAML bombs, deep nesting, not YAML);
line 1 says which field the error must name (`<file>` for the file as a whole). Every file
goes through `smsload validate` in this process (fast), and the worst through `smsload validate`,
`sim` and `load` as real commands: one line, no traceback, exit code 2.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main
from sim.scenario import ScenarioError, parse_scenario

CORPUS = Path(__file__).parent / "fixtures" / "bad_scenarios"
FILES = sorted(CORPUS.glob("*.yaml"))


def _expected_field(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


def test_the_corpus_is_large() -> None:
    assert len(FILES) >= 60


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_each_bad_file_is_exit_2_naming_the_field(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    problems = [line.strip() for line in err.splitlines()[1:]]
    assert problems, err
    field = _expected_field(path)
    if field == "<file>":
        assert any(line.startswith(f"{path}: ") for line in problems), err
    else:
        assert any(line.startswith(f"{field}: ") or line.startswith(f"{field}.") for line in problems), err
    assert len(err) < 2_000  # one line a problem, never the value of a bomb echoed back


WORST = ["yaml-bomb", "deep-nesting", "agents-trillion", "sigma-1000", "duration-huge", "binary"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_the_worst_files_are_exit_2_as_real_commands(tmp_path: Path) -> None:
    r = _run("validate", *(str(CORPUS / f"{name}.yaml") for name in WORST))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert all(f"{name}.yaml: 1 problem" in r.stderr or f"{name}.yaml: 2 problems" in r.stderr for name in WORST)
    assert len(r.stderr.splitlines()) <= 3 * len(WORST), r.stderr  # a header and a line a problem
    for command in ("sim", "load"):
        for name in ("yaml-bomb", "agents-trillion"):
            out = tmp_path / f"{command}-{name}"
            r = _run(command, str(CORPUS / f"{name}.yaml"), "--out", str(out))
            assert r.returncode == 2, (command, name, r.stderr)
            assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, (command, name, r.stderr)
            assert not out.exists()  # nothing started


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: " + "[" * 20_000, 1),  # the corpus's deep-nesting.yaml, in every shape the scanner opens a level
        ("name: " + "{a: " * 20_000, 1),
        ("name: " + "[" * 20_000 + "]" * 20_000, 1),
        ("name:\n" + "- " * 20_000 + "x", 2),
        ("name:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 1_000)), 34),
    ],
)
def test_deep_nesting_is_refused_with_the_line(text: str, line: int) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "deep.yaml")
    assert info.value.lines() == [f"deep.yaml: nested more than 32 levels deep (line {line})"]


def test_nesting_up_to_the_limit_is_only_a_field_problem() -> None:
    base = "name: x\nduration_s: 10\nfleet: {agents: 1}\ndescription: "
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base + "[" * 31 + "]" * 31)  # 32 levels below the root mapping
    assert [path for path, _ in info.value.problems] == ["description"]


def test_deep_nesting_is_exit_2_with_one_line_as_a_real_command() -> None:
    # Refused by the YAML scanner before the scenario models (pydantic) are imported: what keeps it fast.
    path = CORPUS / "deep-nesting.yaml"
    code = (
        "import sys; from sim.cli import main; rc = main(['validate', sys.argv[1]]); "
        "print(rc, 'pydantic' in sys.modules, 'sim.scenario' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["2", "False", "False"], r.stderr
    assert r.stderr.splitlines() == [f"{path}: 1 problem", f"  {path}: nested more than 32 levels deep (line 2)"]
    r = _run("sim", str(path), "--out", "/nonexistent/never-written")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"smsload sim: error: {path}: nested more than 32 levels deep (line 2)"]
