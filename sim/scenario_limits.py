"""What this machine can run: limits on a scenario's fleet size, duration and request rates.

A scenario that validates can still be beyond any run: `agents: 1000000000000` grows a
simulation until the machine swaps and ignores Ctrl-C, a `poll_interval_s` of a nanosecond
never lets virtual time advance, `duration_s: 1e300` never ends. These checks refuse such
files up front, naming the field, with limits taken from this machine where they depend on it
(memory for the fleet) and fixed where they do not (rates and durations no engine reaches).

They are a guard against mistakes, not a judgement of what is wise: a user who means it sets
`SMSLOAD_LIMITS=off` in the environment, and every error line says so.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import psutil

from sim.scenario_yaml import Problem

if TYPE_CHECKING:
    from sim.scenario import Scenario

LIMITS_ENV = "SMSLOAD_LIMITS"
OVERRIDE_HINT = f"set {LIMITS_ENV}=off to run it anyway"
BYTES_PER_AGENT = 1024  # the least any engine keeps per agent (the compiled one: under 1 KB)
MIN_AGENT_CAPACITY = 10_000  # never refuse a fleet this small, whatever the memory reading says
MAX_DURATION_S = 1e7  # about 116 days of model time
MIN_INTERVAL_S = 0.01  # the shortest poll or progress interval
MAX_POLLS_PER_S = 1e6  # agents / poll_interval_s
MAX_POLLS = 1e11  # polls over the whole run: about a day for the compiled engine


def limits_enabled() -> bool:
    return os.environ.get(LIMITS_ENV, "").strip().lower() not in ("off", "0", "false", "no")


def max_agents() -> int:
    """The largest fleet this machine's available memory holds, at the least memory per agent."""
    return max(MIN_AGENT_CAPACITY, psutil.virtual_memory().available // BYTES_PER_AGENT)


def limit_problems(scenario: Scenario) -> list[Problem]:
    """Every limit `scenario` exceeds, as (field path, message); empty when limits are off."""
    if not limits_enabled():
        return []
    problems: list[Problem] = []
    agents, duration = scenario.fleet.agents, scenario.duration_s
    interval, progress = scenario.agent.poll_interval_s, scenario.agent.progress_interval_s
    capacity = max_agents()
    if agents > capacity:
        problems.append(("fleet.agents", f"expected at most {capacity:,} on this machine (its memory), got {agents:,}"))
    if duration > MAX_DURATION_S:
        problems.append(("duration_s", f"expected at most {MAX_DURATION_S:g} s, got {duration:g}"))
    if interval < MIN_INTERVAL_S:
        problems.append(("agent.poll_interval_s", f"expected at least {MIN_INTERVAL_S:g} s, got {interval:g}"))
    if progress < MIN_INTERVAL_S:
        problems.append(("agent.progress_interval_s", f"expected at least {MIN_INTERVAL_S:g} s, got {progress:g}"))
    if interval >= MIN_INTERVAL_S and agents / interval > MAX_POLLS_PER_S:
        problems.append(
            ("agent.poll_interval_s", f"expected at most {MAX_POLLS_PER_S:g} polls/s, got {agents / interval:.3g}")
        )
    elif interval >= MIN_INTERVAL_S and duration <= MAX_DURATION_S and agents * duration / interval > MAX_POLLS:
        problems.append(
            ("duration_s", f"expected at most {MAX_POLLS:g} polls in the run, got {agents * duration / interval:.3g}")
        )
    return [(path, f"{msg} ({OVERRIDE_HINT})") for path, msg in problems]
