"""Shortening a scenario (`--duration-s` below its schedule): the part that fits runs, said in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sim.scenario import ScenarioError, parse_scenario
from sim.scenario_shorten import shorten
from sim.scenarios import find_scenario

FAULTS_AND_RAMP = """
name: s
duration_s: 100
fleet: {agents: 100, arrival: {kind: ramp, duration_s: 50}}
operator: {tasks: {kind: waves, waves: [{at_s: 5, count: 3}, {at_s: 40, count: 4}]}}
faults:
  - {kind: outage, start_s: 10, duration_s: 20}
  - {kind: outage, start_s: 60, duration_s: 5}
"""


def test_quickstart_shortened_to_10_s_keeps_the_first_task_wave() -> None:
    short, notes = shorten(find_scenario("quickstart"), 10)
    assert short.duration_s == 10
    assert [(w.at_s, w.count) for w in short.operator.tasks.waves] == [(5, 10)]  # type: ignore[union-attr]
    assert notes == ["task waves at 15 s (10 tasks) dropped"]


def test_ramps_keep_their_rate_faults_are_dropped_or_clipped() -> None:
    short, notes = shorten(parse_scenario(FAULTS_AND_RAMP), 25)
    assert short.fleet.agents == 50 and short.fleet.arrival.duration_s == 25  # type: ignore[union-attr]
    assert [(w.at_s, w.count) for w in short.operator.tasks.waves] == [(5, 3)]  # type: ignore[union-attr]
    assert [(f.start_s, f.duration_s) for f in short.faults] == [(10, 15)]
    assert len(notes) == 4 and any("clipped to 15 s" in n for n in notes) and any("at 60 s dropped" in n for n in notes)


def test_longer_or_equal_changes_only_the_duration() -> None:
    base = find_scenario("quickstart")
    assert shorten(base, 60) == (base, [])
    longer, notes = shorten(base, 90)
    assert longer.duration_s == 90 and notes == []


def test_an_error_only_when_no_work_would_remain() -> None:
    with pytest.raises(ScenarioError) as info:
        shorten(find_scenario("quickstart"), 4)
    assert "nothing of the operator's work would remain" in str(info.value)


@pytest.mark.parametrize("command", ["sim", "load"])
def test_cli_runs_quickstart_shortened_and_checks_options_first(command: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    smsload = [sys.executable, "-c", "import sys; from sim.cli import main; sys.exit(main())"]
    bad = subprocess.run(
        [*smsload, command, "quickstart", "--duration-s", "4", "--agents", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--agents must be positive" in bad.stderr and "Traceback" not in bad.stderr
    if command == "load":  # a bad --host is reported even though the scenario would be refused too
        host = subprocess.run(
            [*smsload, "load", "quickstart", "--duration-s", "4", "--host", "nonsense"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert host.returncode == 2 and "--host" in host.stderr and "duration" not in host.stderr
