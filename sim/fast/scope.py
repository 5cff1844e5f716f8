"""What the fast engine models of a scenario, and what it leaves out: light (no numba), for `auto`."""

from __future__ import annotations

from sim.fleet import has_operator_work
from sim.scenario import Scenario


def not_modelled(scenario: Scenario) -> list[str]:
    """The parts of `scenario` the fast engine leaves out, one line each (empty: it models all of it)."""
    out = []
    if has_operator_work(scenario):
        out.append(
            "the operator's tasks (and with them commands, progress reports, command results, log uploads): "
            "the fast engine simulates the polling plane only; use --engine simpy for the lifecycle"
        )
    kinds = sorted({f.kind for f in scenario.faults if f.kind != "outage"})
    if kinds:
        out.append(
            f"faults of kind {', '.join(kinds)}: the fast engine applies outages only; use --engine simpy for them"
        )
    return out
