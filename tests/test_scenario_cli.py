"""`smsload validate` in a subprocess: exit 0 and a summary on good files, exit 2 and field paths on bad ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "sim" / "scenarios").glob("*.yaml"))


def validate(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", "validate", *map(str, paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_shipped_scenarios_validate() -> None:
    result = validate(*SHIPPED)
    assert result.returncode == 0, result.stderr
    assert "quickstart: 200 agents" in result.stdout
    assert "40.0 polls/s" in result.stdout and "333.3 polls/s" in result.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "name: bad\nduration_s: 60\nfleet: {agents: 10}\nagent: {poll_interval_s: -5, retry: {base_s: x}}\n",
            ["agent.poll_interval_s: ", "agent.retry.base_s: "],
        ),
        ("name: bad\nduration_s: 60\nfleet: {agents: 10, colour: blue}\n", ["fleet.colour: unknown field"]),
        ("name: bad\nfleet: {agents: 10\n", ["invalid YAML at line"]),
    ],
    ids=["values", "unknown-key", "yaml-syntax"],
)
def test_malformed_file_exits_2_naming_the_field(tmp_path: Path, text: str, expected: list[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    result = validate(SHIPPED[0], bad)
    out = result.stdout + result.stderr
    assert result.returncode == 2
    assert "Traceback" not in out
    assert f"{bad}: " in result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert f"{SHIPPED[0]}: ok" in result.stdout  # the good file is still checked and reported


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = validate(tmp_path / "absent.yaml")
    assert result.returncode == 2
    assert "no such file" in result.stderr and "Traceback" not in result.stderr


def test_shipped_scenarios_validate_by_name(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sim.cli", "validate", "quickstart", "capacity-baseline.yaml"],
        cwd=tmp_path,  # no such files here: the names are the shipped scenarios'
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "quickstart: ok - quickstart: 200 agents" in result.stdout
    assert "capacity-baseline.yaml: ok - capacity-baseline:" in result.stdout


def test_an_unknown_name_lists_the_shipped_ones() -> None:
    result = validate("quickstrat")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "quickstrat: no such file, and no shipped scenario of that name" in result.stderr
    assert "(shipped: capacity-baseline, quickstart, reconnect-storm)" in result.stderr
