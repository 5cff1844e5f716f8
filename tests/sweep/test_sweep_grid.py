"""`--vary` specs into grid points: lists, log and linear ranges, integer fields, validation before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.scenario import load_scenario
from sim.sweep.grid import GridError, grid_points, parse_vary


def test_lists_ranges_and_short_names(tiny: Path) -> None:
    base = load_scenario(tiny)
    agents = parse_vary("agents=1e4:1e6:log3", base)
    assert agents.path == "fleet.agents" and agents.values == (10_000, 100_000, 1_000_000)
    assert all(type(v) is int for v in agents.values)  # an integer field keeps integers
    assert parse_vary("poll_interval_s=10,30,60", base).values == (10, 30, 60)
    assert parse_vary("agent.poll_interval_s=1:2:lin3", base).values == (1.0, 1.5, 2.0)
    assert parse_vary("workers=1:4:log5", base).values == (1, 2, 3, 4)  # rounded, repeats dropped
    assert parse_vary("server.liveness.write=off,every_poll", base).values == ("off", "every_poll")


def test_points_are_the_product_times_replications_with_seeds(tiny: Path) -> None:
    base = load_scenario(tiny)
    varies = (parse_vary("agents=10,20", base), parse_vary("workers=1,2,4", base))
    points = grid_points(base, varies, replications=2, duration_s=5)
    assert len(points) == 12 and len({p.key for p in points}) == 12
    first = points[0]
    assert first.key == "fleet.agents=10,server.workers=1,rep=0"
    assert {p.seed for p in points} == {5, 6}  # the scenario's seed + replication
    assert all(p.scenario.duration_s == 5 for p in points)
    p = next(p for p in points if p.key == "fleet.agents=20,server.workers=4,rep=1")
    assert (p.scenario.fleet.agents, p.scenario.server.workers, p.seed) == (20, 4, 6)
    again = grid_points(base, varies, replications=2, duration_s=5)
    assert [p.key for p in again] == [p.key for p in points]  # deterministic: a re-run finds the same points


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("agents", "PATH=v1,v2"),
        ("agents=1:10:foo3", "lo:hi:logN"),
        ("agents=0:10:log3", "positive ends"),
        ("agents=1:x:lin3", "expected a number, got 'x'"),
        ("agents=1,,3", "empty value"),
        ("agents=1:2:3:4", "a list v1,v2"),
    ],
)
def test_bad_specs_name_the_problem(tiny: Path, spec: str, names: str) -> None:
    with pytest.raises(GridError) as info:
        parse_vary(spec, load_scenario(tiny))
    assert names in str(info.value) and spec in str(info.value)


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("fleet.agentz=1,2", "fleet.agentz"),
        ("agents=0,10", "fleet.agents"),
        ("poll_interval_s=0.05,1", "agent.poll_jitter_s"),  # below the jitter: caught before anything runs
        ("nowhere.at.all=1", "nowhere.at.all"),
    ],
)
def test_points_that_are_not_valid_scenarios_fail_first(tiny: Path, spec: str, names: str) -> None:
    base = load_scenario(tiny)
    with pytest.raises(GridError) as info:
        grid_points(base, (parse_vary(spec, base),), replications=1)
    assert names in str(info.value)


def test_a_field_varied_twice_or_no_replications(tiny: Path) -> None:
    base = load_scenario(tiny)
    with pytest.raises(GridError, match="varied twice"):
        grid_points(base, (parse_vary("agents=1", base), parse_vary("fleet.agents=2", base)), 1)
    with pytest.raises(GridError, match="at least 1"):
        grid_points(base, (parse_vary("agents=1", base),), 0)
