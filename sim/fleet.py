"""From a Scenario to the agents and the operator that both executors run.

Agent `index` gets the same draws (OS, disk size, bandwidth) in the simulation and in the
load test: its spec comes from a generator seeded by (scenario seed, index), so a load test
and a simulation of one scenario model the same fleet.
"""

from __future__ import annotations

import math
import random

from sim.model.agent import AgentSpec
from sim.model.lifecycle import OsType
from sim.model.operator import OperatorSpec
from sim.scenario import Ramp, Scenario, TaskRate, TaskWaves, Waves


def agent_spec(scenario: Scenario, index: int, name_prefix: str = "") -> AgentSpec:
    """The fixed parameters of agent `index` (0-based) in this scenario; its source is named with `name_prefix`."""
    # An integer seed (a string seed costs a SHA-512 per agent); distinct for every (seed, index).
    rng = random.Random((scenario.seed << 40) + index)
    fleet, agent = scenario.fleet, scenario.agent
    os_type = _pick(fleet.os_mix, rng)
    return AgentSpec(
        index=index,
        os_type=os_type,
        disk_bytes=int(fleet.disk_gb.sample(rng) * 1e9),
        bandwidth_mbps=agent.bandwidth_mbps.sample(rng),
        poll_interval_s=agent.poll_interval_s,
        poll_jitter_s=agent.poll_jitter_s,
        progress_interval_s=agent.progress_interval_s,
        progress_jitter_s=agent.progress_jitter_s,
        subtask_s=agent.subtask_s,
        failure_probability=agent.failure_probability,
        upload_log_s=agent.upload_log_s,
        sync_fraction=agent.sync_fraction,
        retry=agent.retry,
        name_prefix=name_prefix,
        restarts=_restarts(scenario, index, rng),
    )


def _restarts(scenario: Scenario, index: int, rng: random.Random) -> tuple[tuple[float, float], ...]:
    """(agent time s, down s) of this agent's restarts: drawn after its other draws, in its own time."""
    faults = scenario.agent_restarts()
    if not faults:
        return ()
    start = arrival_s(scenario, index)
    drawn = ((f.draw(rng), f.down_s) for f in faults)
    return tuple(sorted((at - start, down) for at, down in drawn if at is not None and at >= start))


def _pick(mix: dict[OsType, float], rng: random.Random) -> OsType:
    u, acc = rng.random(), 0.0
    for os_type, share in sorted(mix.items()):  # OsType is a str enum: sorts by name, no .value lookups
        acc += share
        if u < acc:
            return os_type
    return max(mix, key=lambda k: mix[k])


def arrival_s(scenario: Scenario, index: int) -> float:
    """When agent `index` starts (registers), in seconds from the run's start."""
    arrival, n = scenario.fleet.arrival, scenario.fleet.agents
    if isinstance(arrival, Ramp):
        return arrival.duration_s * index / n
    if isinstance(arrival, Waves):
        per_wave = math.ceil(n / arrival.waves)
        return arrival.interval_s * (index // per_wave)
    return 0.0


def operator_spec(scenario: Scenario, source_prefix: str = "") -> OperatorSpec:
    """The operator of this scenario, acting only on sources named with `source_prefix`."""
    op = scenario.operator
    tasks = op.tasks
    return OperatorSpec(
        waves=tuple((w.at_s, w.count) for w in tasks.waves) if isinstance(tasks, TaskWaves) else (),
        rate_per_s=tasks.per_s if isinstance(tasks, TaskRate) else 0.0,
        rate_start_s=tasks.start_s if isinstance(tasks, TaskRate) else 0.0,
        check_interval_s=op.check_interval_s,
        # SYNC has no documented operator action: a public-API-only run never asks for one.
        sync_after_s=None if scenario.public_api_only else op.sync_after_s,
        stop_probability=op.stop_probability,
        resume_after_s=op.resume_after_s,
        restart_probability=op.restart_probability,
        log_collect_probability=op.log_collect_probability,
        log_bucket=op.log_bucket,
        delete_at_end=op.delete_at_end,
        linux_block_fraction=scenario.fleet.linux_block_fraction,
        source_prefix=source_prefix,
    )


def has_operator_work(scenario: Scenario) -> bool:
    tasks = scenario.operator.tasks
    return isinstance(tasks, TaskRate) or bool(tasks.waves)


def source_prefix(run_id: str) -> str:
    """The name prefix that tags the sources (and tasks) of the run `run_id` as its own.

    A load test's run id is unique (NAME-locust-TIMESTAMP-RANDOM) and ends in a fixed-length
    random part, so no run's prefix begins another run's names. The simulation passes none:
    its server holds nothing but the run.
    """
    return f"{run_id}-" if run_id else ""
