"""`run_des`: simulate a scenario and write its run directory.

One shared `random.Random(seed)` drives every draw during the run (a per-agent generator would
cost ~2.5 KB an agent); SimPy's event order is deterministic, so the same scenario and seed
give identical tables. Agent specs (OS, disk, bandwidth) come from `sim.fleet`, seeded per
agent, so the load test of the same scenario models the same fleet.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import simpy

from sim.des.engine import SimServer, Simulation
from sim.fleet import agent_spec, arrival_s, has_operator_work, operator_spec
from sim.model.agent import Agent
from sim.model.api import InMemoryApi
from sim.model.controlplane import ControlPlane
from sim.model.operator import Operator
from sim.model.store import MemoryStore
from sim.records import OPERATOR_ID, RequestLog, RunDir, commands_table, finish_run, tasks_table
from sim.scenario import Scenario

EXECUTOR = "des"
SERVER_TABLES = "the simulated control plane"


def _ids(seed: int) -> Callable[[], str]:
    """Deterministic 32-hex ids for sources and tasks (uuid4 would differ run to run)."""
    counter = iter(range(1, 1 << 62))
    prefix = f"{seed & 0xFFFFFFFF:08x}"
    return lambda: f"{prefix}{next(counter):024x}"


def run_des(scenario: Scenario, out: Path, *, progress: Callable[[float, float], None] | None = None) -> Path:
    """Simulate `scenario` for its duration; write and return the run directory `out`.

    `progress(now_s, duration_s)` is called every 1% of virtual time. On Ctrl-C the directory
    is still written, with what was simulated so far, and marked incomplete.
    """
    run = RunDir(out, scenario, EXECUTOR)
    run_id = run.run_id
    env = simpy.Environment()
    rng = random.Random(scenario.seed)
    store = MemoryStore()
    api = InMemoryApi(ControlPlane(store, new_id=_ids(scenario.seed), liveness=scenario.server.liveness))
    cfg = scenario.server
    server = SimServer(
        env,
        api,
        rng,
        workers=cfg.workers,
        service_ms=cfg.service_ms_for,
        write_lock=cfg.write_lock,
        rtt_ms=cfg.rtt_ms,
        requeue_bodies=cfg.requeue_bodies,
        requeue_at=cfg.requeue_at,
        idle_start_ms=cfg.idle_start_ms,
        timeout_s=scenario.agent.request_timeout_s,
        faults=scenario.fault_timeline(),
    )
    log = RequestLog()
    sim = Simulation(env, server, log, on_chunk=lambda: run.append_requests(log.take(run_id, EXECUTOR)))
    complete = False
    wall0 = time.perf_counter()
    try:  # from here on, an interruption still writes every table (empty ones while spawning)
        for i in range(scenario.fleet.agents):
            sim.spawn(i, Agent(agent_spec(scenario, i), rng).run(), arrival_s(scenario, i))
        if has_operator_work(scenario):
            sim.spawn(OPERATOR_ID, Operator(operator_spec(scenario), rng).run())
        if progress is not None:
            env.process(_ticker(env, scenario.duration_s, progress))
        env.run(until=scenario.duration_s)
        complete = True
    finally:
        run.append_requests(log.take(run_id, EXECUTOR))
        finish_run(
            run,
            complete=complete,
            duration_s=float(env.now),
            wall_s=time.perf_counter() - wall0,
            tasks=tasks_table(run_id, store.events()),
            commands=commands_table(run_id, store.commands()),
            server_tables=SERVER_TABLES,
        )
    return out


def _ticker(env: simpy.Environment, duration_s: float, progress: Callable[[float, float], None]):
    step = duration_s / 100
    while True:
        progress(env.now, duration_s)
        yield env.timeout(step)
