"""Shortening a scenario: run the part of its schedule that fits in a shorter duration.

`--duration-s 10` on the quickstart (tasks at 5 s and 15 s, 60 s long) is a smoke test of the
first ten seconds, not a different experiment: what is scheduled inside the new end runs at
the same times, and what starts at or after it is dropped. A task wave or a Poisson stream
of tasks past the end is dropped; a ramp or waves of arriving agents keep their rate or
spacing and lose the agents that would arrive after the end (so `fleet.agents` shrinks);
an outage past the end is dropped, one running past it is clipped. `shorten` says what it
dropped, in words, for the one line the commands print.

It is an error only when nothing of the scenario's work would remain: a scenario whose
operator creates tasks, none of them before the new end. (Agents always arrive at t = 0,
so the polling always remains.) The result is validated as any scenario is.
"""

from __future__ import annotations

import math
from typing import Any

from sim.scenario import Ramp, Scenario, ScenarioError, TaskRate, TaskWaves, Waves, validate_scenario


def shorten(scenario: Scenario, duration_s: float) -> tuple[Scenario, list[str]]:
    """`scenario` lasting `duration_s`, and what was dropped or clipped to fit (empty when nothing was)."""
    if duration_s >= scenario.duration_s:
        return scenario.with_overrides(duration_s=duration_s), []
    end = duration_s
    data = scenario.to_dict()
    data["duration_s"] = end
    notes = _tasks(scenario, data, end) + _arrival(scenario, data, end) + _faults(scenario, data, end)
    return validate_scenario(data, source="--duration-s"), notes


def _s(value: float) -> str:
    return f"{value:g} s"


def _tasks(scenario: Scenario, data: dict[str, Any], end: float) -> list[str]:
    tasks = scenario.operator.tasks
    if isinstance(tasks, TaskWaves):
        kept = [w for w in tasks.waves if w.at_s < end]
        dropped = [w for w in tasks.waves if w.at_s >= end]
        if not dropped:
            return []
        if not kept:
            raise ScenarioError(
                [
                    (
                        "",
                        f"nothing of the operator's work would remain: its first task wave is at "
                        f"{_s(tasks.waves[0].at_s)}; expected more than {tasks.waves[0].at_s:g}, got {end:g}",
                    )
                ],
                "--duration-s",
            )
        data["operator"]["tasks"]["waves"] = [w.model_dump(mode="json") for w in kept]
        what = ", ".join(f"{_s(w.at_s)} ({w.count} tasks)" for w in dropped)
        return [f"task waves at {what} dropped"]
    if isinstance(tasks, TaskRate) and tasks.start_s >= end:
        raise ScenarioError(
            [
                (
                    "",
                    f"nothing of the operator's work would remain: its tasks start at "
                    f"{_s(tasks.start_s)}; expected more than {tasks.start_s:g}, got {end:g}",
                )
            ],
            "--duration-s",
        )
    return []


def _arrival(scenario: Scenario, data: dict[str, Any], end: float) -> list[str]:
    arrival, n = scenario.fleet.arrival, scenario.fleet.agents
    if isinstance(arrival, Ramp) and arrival.duration_s > end:
        # Agent i arrives at ramp * i / n: keep those before the end, at the same times.
        kept = max(1, math.floor(n * end / arrival.duration_s))
        data["fleet"]["agents"] = kept
        data["fleet"]["arrival"]["duration_s"] = min(end, arrival.duration_s * kept / n)
        return [f"the fleet's ramp keeps its rate: {kept:,} of {n:,} agents arrive before the end"]
    if isinstance(arrival, Waves) and (arrival.waves - 1) * arrival.interval_s >= end:
        waves = math.ceil(end / arrival.interval_s)  # wave k arrives at k * interval_s
        per_wave = math.ceil(n / arrival.waves)
        kept = min(n, per_wave * waves)
        data["fleet"]["agents"] = kept
        data["fleet"]["arrival"]["waves"] = waves
        return [f"{arrival.waves - waves} of {arrival.waves} agent waves dropped: {kept:,} of {n:,} agents"]
    return []


def _faults(scenario: Scenario, data: dict[str, Any], end: float) -> list[str]:
    notes, kept = [], []
    for fault in scenario.faults:
        if fault.start_s >= end:
            notes.append(f"the {fault.kind} at {_s(fault.start_s)} dropped")
            continue
        doc = fault.model_dump(mode="json")
        if fault.start_s + fault.duration_s > end:
            doc["duration_s"] = end - fault.start_s
            notes.append(f"the {fault.kind} at {_s(fault.start_s)} clipped to {_s(end - fault.start_s)}")
        kept.append(doc)
    data["faults"] = kept
    return notes
