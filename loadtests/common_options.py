"""Locust's own -u/--users and -r/--spawn-rate, mapped onto the scenario's fleet (or refused, with the reason).

The load shape follows the scenario (`loadtests.shape`), so Locust's user count and spawn
rate cannot be obeyed literally; they are read as what a Locust user means by them:

- `-u N` (the web UI's "Number of users"): the fleet has N agents (`fleet.agents`); the
  operator is one more Locust user on top.
- `-r R` (the web UI's "Ramp up"): the agents arrive on a ramp, R a second, over N / R
  seconds (`fleet.arrival: {kind: ramp}`); refused when the ramp would outlast the run.

Either left at the value the scenario itself implies (`implied`, what the web UI's form is
filled in with) changes nothing: the scenario's arrival, all at once or in waves, stays.
"""

from __future__ import annotations

import math

from sim.scenario import AllAtOnce, Ramp, Scenario, ScenarioError


def implied(scenario: Scenario) -> tuple[int, float]:
    """(users, spawn rate) that say "as the scenario has it": the fleet size, and its arrival rate.

    All at once is shown as the whole fleet in a second; waves as one wave a second.
    """
    arrival, n = scenario.fleet.arrival, scenario.fleet.agents
    if isinstance(arrival, Ramp):
        return n, n / arrival.duration_s
    if isinstance(arrival, AllAtOnce):
        return n, float(n)
    return n, float(math.ceil(n / arrival.waves))


def apply_common_options(base: Scenario, users: int | None, spawn_rate: float | None) -> Scenario:
    """`base` with -u/-r applied (None, or the implied value: unchanged); ScenarioError says why not."""
    default_users, default_rate = implied(base)
    scenario = base
    if users is not None and users != default_users:
        if users < 1:
            raise ScenarioError([("", f"expected at least 1 agent, got {users}")], "-u/--users")
        scenario = scenario.with_overrides(agents=users)
    if spawn_rate is not None and not math.isclose(spawn_rate, default_rate, rel_tol=1e-9):
        n, end = scenario.fleet.agents, scenario.duration_s
        if not (spawn_rate > 0 and math.isfinite(spawn_rate)):
            raise ScenarioError([("", f"expected agents per second above 0, got {spawn_rate:g}")], "-r/--spawn-rate")
        ramp_s = n / spawn_rate
        if ramp_s > end:
            raise ScenarioError(
                [
                    (
                        "",
                        f"{n:,} agents at {spawn_rate:g} a second take {ramp_s:g} s to arrive, longer than the run "
                        f"({end:g} s); expected at least {n / end:g} agents a second",
                    )
                ],
                "-r/--spawn-rate",
            )
        scenario = scenario.with_overrides(fields={"fleet.arrival": {"kind": "ramp", "duration_s": ramp_s}})
    return scenario
