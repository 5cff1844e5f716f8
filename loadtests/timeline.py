"""The fleet's arrival as a count: how many agents have started by a moment of the run.

Kept apart from `shape.py`, which is a Locust class: importing Locust patches a process for
gevent, and this is needed (and tested) without it.
"""

from __future__ import annotations

from bisect import bisect_right

from sim.fleet import arrival_s
from sim.scenario import Scenario


def agents_due(scenario: Scenario, t_s: float) -> int:
    """How many agents have arrived by `t_s` seconds into the run (arrival is in index order)."""
    n = scenario.fleet.agents
    return bisect_right(range(n), t_s, key=lambda i: arrival_s(scenario, i))
