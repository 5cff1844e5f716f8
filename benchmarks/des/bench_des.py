"""Benchmark the simulation: simulated polls per wall second, beside a bare SimPy poll loop, and memory per agent.

For 1k, 10k and 100k agents (30 s polling, 3 s jitter, 8 workers, exponential 0.5 ms polls)
the full simulation (`run_des`: agent models, the control plane, records written to Parquet)
runs for about `--polls` polls; in the same run, a bare SimPy loop with the same agents and
the same server (each agent a process: sleep, request one of 8 `simpy.Resource` workers,
hold it for the service time) runs for the same virtual time. The figure is the ratio of
polls per wall second (target >= 0.6x). Then the capacity baseline (10,000 agents, one
virtual hour, the operator at work) is timed as `smsload sim` runs it (target < 60 s), and
the memory of an idle agent is measured with tracemalloc (target < 2 KB): everything 20,000
registered, idle agents add to a simulation, and, of that, the server's record of each source.

    .venv/bin/python benchmarks/des/bench_des.py [--polls N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import simpy

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sim.des.engine import SimServer, Simulation  # noqa: E402
from sim.des.run import run_des  # noqa: E402
from sim.fleet import agent_spec  # noqa: E402
from sim.model.agent import Agent  # noqa: E402
from sim.model.api import InMemoryApi  # noqa: E402
from sim.model.controlplane import ControlPlane, Registration  # noqa: E402
from sim.model.lifecycle import OsType  # noqa: E402
from sim.model.store import MemoryStore  # noqa: E402
from sim.records import RequestLog, load_run  # noqa: E402
from sim.scenario import Scenario, validate_scenario  # noqa: E402
from sim.scenarios import find_scenario  # noqa: E402

INTERVAL_S, JITTER_S, WORKERS, SERVICE_MS = 30.0, 3.0, 8, 0.5


def poll_scenario(agents: int, duration_s: float) -> Scenario:
    return validate_scenario(
        {
            "name": f"bench-{agents}",
            "seed": 1,
            "duration_s": duration_s,
            "fleet": {"agents": agents, "arrival": {"kind": "ramp", "duration_s": min(INTERVAL_S, duration_s)}},
            "agent": {"poll_interval_s": INTERVAL_S, "poll_jitter_s": JITTER_S},
            "server": {
                "workers": WORKERS,
                "write_lock": True,
                "rtt_ms": 1,
                # Registration is kept cheap: this measures polling, not a 10^5-agent registration backlog.
                "service_ms": {
                    "default": {"dist": "exponential", "mean": 2},
                    "register": 0.01,
                    "poll": {"dist": "exponential", "mean": SERVICE_MS},
                },
                # Read-only polls, as the bare loop's: the same work on both sides. The simulation
                # still asks the control plane, for every poll, whether it would write.
                "liveness": {"write": "off"},
            },
        }
    )


def bare_loop(agents: int, duration_s: float) -> tuple[int, float]:
    """The same agents as a bare SimPy loop: (polls, wall seconds)."""
    env = simpy.Environment()
    rng = random.Random(1)
    server = simpy.Resource(env, capacity=WORKERS)
    polls = [0]

    def agent(start: float):
        yield env.timeout(start + rng.uniform(0, INTERVAL_S))
        while True:
            with server.request() as req:
                yield req
                yield env.timeout(rng.expovariate(1000.0 / SERVICE_MS))
            polls[0] += 1
            yield env.timeout(INTERVAL_S + rng.uniform(-JITTER_S, JITTER_S))

    ramp = min(INTERVAL_S, duration_s)
    for i in range(agents):
        env.process(agent(ramp * i / agents))
    t0 = time.perf_counter()
    env.run(until=duration_s)
    return polls[0], time.perf_counter() - t0


def ours(agents: int, duration_s: float, tmp: Path) -> tuple[int, float]:
    """The full simulation, records and all: (polls, wall seconds)."""
    out = tmp / f"des-{agents}"
    t0 = time.perf_counter()
    run_des(poll_scenario(agents, duration_s), out)
    wall = time.perf_counter() - t0
    summary = load_run(out).summary or {}
    polls = summary["endpoints"]["GET /v1/sms/sources/{source_id}/command"]["count"]
    return polls, wall


def idle_agent_bytes(n: int) -> tuple[float, float]:
    """(bytes an idle registered agent adds to a simulation, bytes of that which are the server's source record)."""
    scenario = poll_scenario(n, 100.0)
    env = simpy.Environment()
    rng = random.Random(1)
    api = InMemoryApi(ControlPlane(MemoryStore()))
    server = SimServer(
        env,
        api,
        rng,
        workers=WORKERS,
        service_ms=scenario.server.service_ms_for,
        write_lock=False,
        rtt_ms=scenario.server.rtt_ms,
    )
    log = RequestLog()
    sim = Simulation(env, server, log, on_chunk=lambda: log.take("bench", "des"))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        sim.spawn(i, Agent(agent_spec(scenario, i), rng).run())
    env.run(until=2 * INTERVAL_S)  # every agent registered and polling, none with a task
    log.take("bench", "des")
    gc.collect()
    total = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()

    cp = ControlPlane(MemoryStore())
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        spec = agent_spec(scenario, i)
        body = spec.registration()
        cp.register(
            "default",
            Registration(
                name=body["name"],
                os_type=OsType(body["os_type"]),
                ip=body["ip"],
                hostname=body["hostname"],
                os_version=body["os_version"],
                agent_version=body["agent_version"],
                total_bytes=spec.disk_bytes,
            ),
            0.0,
        )
    gc.collect()
    server_side = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()
    return total, server_side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=600_000, help="polls per fleet size (default 600,000)")
    parser.add_argument("--quick", action="store_true", help="fewer polls, no 100k fleet, no capacity baseline")
    args = parser.parse_args()
    polls_target = 60_000 if args.quick else args.polls
    sizes = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    print(f"python {sys.version.split()[0]}, simpy {simpy.__version__}")
    print(f"{'agents':>8} {'virtual s':>10} {'sim polls/s':>12} {'bare polls/s':>13} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            duration = max(4 * INTERVAL_S, polls_target * INTERVAL_S / n)
            bare_n, bare_wall = bare_loop(n, duration)
            sim_n, sim_wall = ours(n, duration, Path(tmp))
            ratio = (sim_n / sim_wall) / (bare_n / bare_wall)
            print(f"{n:>8} {duration:>10.0f} {sim_n / sim_wall:>12,.0f} {bare_n / bare_wall:>13,.0f} {ratio:>5.2f}x")
        if not args.quick:
            scenario = find_scenario("capacity-baseline")
            t0 = time.perf_counter()
            out = run_des(scenario, Path(tmp) / "baseline")
            wall = time.perf_counter() - t0
            requests = load_run(out).manifest["requests"]
            print(
                f"capacity-baseline (10,000 agents, 3600 virtual s, operator at work): "
                f"{requests:,} requests in {wall:.1f} s wall (target < 60 s)"
            )
    total, server_side = idle_agent_bytes(2_000 if args.quick else 20_000)
    print(
        f"idle agent: {total:,.0f} B in all, of which {server_side:,.0f} B is the server's record of its source; "
        f"the agent itself (model, SimPy process, spec): {total - server_side:,.0f} B (target < 2,048 B)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
