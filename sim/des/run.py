"""`run_des`: simulate a scenario and write its run directory.

One shared `random.Random(seed)` drives every draw during the run (a per-agent generator would
cost ~2.5 KB an agent); SimPy's event order is deterministic, so the same scenario and seed
give identical tables. Agent specs (OS, disk, bandwidth) come from `sim.fleet`, seeded per
agent, so the load test of the same scenario models the same fleet.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import simpy

from sim.des.engine import SimServer, Simulation
from sim.fleet import agent_spec, arrival_s, has_operator_work, operator_spec
from sim.model.agent import Agent
from sim.model.api import InMemoryApi
from sim.model.controlplane import ControlPlane
from sim.model.operator import Operator
from sim.model.store import MemoryStore
from sim.records import OPERATOR_ID, RequestLog, RunDir, commands_table, load_run, summarize, tasks_table
from sim.scenario import Scenario


def run_id_for(scenario: Scenario, executor: str) -> str:
    """Deterministic for a simulation: the same scenario and seed give the same run id (and tables)."""
    digest = hashlib.sha256(json.dumps(scenario.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{scenario.name}-{executor}-seed{scenario.seed}-{digest}"


def default_out(scenario: Scenario, executor: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{scenario.name}-{executor}-{stamp}"


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
    run_id = run_id_for(scenario, "des")
    run = RunDir(out, run_id, "des", scenario.to_dict(), scenario.seed)
    env = simpy.Environment()
    rng = random.Random(scenario.seed)
    store = MemoryStore()
    api = InMemoryApi(ControlPlane(store, new_id=_ids(scenario.seed), liveness=scenario.server.liveness))
    cfg = scenario.server
    server = SimServer(
        env, api, rng, workers=cfg.workers, service_ms=cfg.service_ms_for, write_lock=cfg.write_lock, rtt_ms=cfg.rtt_ms
    )
    log = RequestLog()
    sim = Simulation(env, server, log, on_chunk=lambda: run.append_requests(log.take(run_id, "des")))
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
        run.append_requests(log.take(run_id, "des"))
        run.close_requests()
        run.write_table("tasks", tasks_table(run_id, store.events()))
        run.write_table("commands", commands_table(run_id, store.commands()))
        simulated_s = float(env.now)
        loaded = load_run(out)
        summary = summarize(loaded.requests, loaded.tasks, loaded.commands, max(simulated_s, 1e-9))
        run.finish(
            summary,
            complete,
            simulated_s=simulated_s,
            wall_s=round(time.perf_counter() - wall0, 3),
            agents=scenario.fleet.agents,
        )
    return out


def _ticker(env: simpy.Environment, duration_s: float, progress: Callable[[float, float], None]):
    step = duration_s / 100
    while True:
        progress(env.now, duration_s)
        yield env.timeout(step)
