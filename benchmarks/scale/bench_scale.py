"""Benchmark the fast engine at fleet scale, beside the SimPy simulation in the same run.

1. Polls per wall second, fast engine vs SimPy, on the same polling-only scenario
   (`--agents`, default 100,000 agents polling every 30 s +- 3 s, 8 workers, exponential
   0.5 ms polls, the liveness write coalesced, no write lock): each engine writes its run
   directory end to end (`run_des`: rows; `run_fast`: histograms). SimPy runs `--simpy-s`
   virtual seconds, the fast engine `--fast-s` (longer, for a stable time); the figure is
   the ratio of polls per wall second (target >= 100x), median of `--reps` interleaved pairs.
2. One million agents polling every 30 s for a virtual day (2.9 billion polls), with
   `--day-agents`/`--day-s` to run less (target: under 10 minutes on the 2-core machine).
3. Memory per agent: the fast engine's arrays (exact bytes), and the peak resident memory a
   run adds, per agent, measured by psutil in a fresh process.
4. A capacity sweep on local processes (`smsload sweep`'s runner, fast engine): fleets of
   10^4..10^6 (5 sizes) x 2 worker counts x 2 replications, one virtual hour each; wall time
   of the whole sweep and of its capacity table.

CPU time is printed beside wall time: on a shared machine the wall time counts other
processes' turns on the cores, the CPU time less so; the load average is printed too.

    .venv/bin/python benchmarks/scale/bench_scale.py [--agents N] [--simpy-s S] [--fast-s S]
        [--reps N] [--day-agents N] [--day-s S] [--skip-day] [--sweep-sizes SPEC] [--skip-sweep] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sim.des.run import run_des  # noqa: E402
from sim.fast.engine import calendar, simulate  # noqa: E402
from sim.fast.kernel import AGENT_COLUMNS  # noqa: E402
from sim.fast.run import run_fast  # noqa: E402
from sim.records import load_run  # noqa: E402
from sim.report.capacity_sweep import capacity_table  # noqa: E402
from sim.scenario import Scenario, validate_scenario  # noqa: E402
from sim.sweep.grid import parse_vary  # noqa: E402
from sim.sweep.runner import SweepSpec, run_sweep  # noqa: E402


def scenario(agents: int, duration_s: float, *, ramp_s: float = 600.0) -> Scenario:
    return validate_scenario(
        {
            "name": "scale",
            "seed": 1,
            "duration_s": duration_s,
            "fleet": {"agents": agents, "arrival": {"kind": "ramp", "duration_s": min(ramp_s, duration_s)}},
            "agent": {"poll_interval_s": 30, "poll_jitter_s": 3},
            "server": {
                "workers": 8 if agents <= 100_000 else 64,
                "write_lock": False,
                "service_ms": {
                    "default": {"dist": "exponential", "mean": 2.0},
                    "poll": {"dist": "exponential", "mean": 0.5},
                    "poll_write": {"dist": "exponential", "mean": 1.0},
                },
                "rtt_ms": {"dist": "lognormal", "median": 1.0, "sigma": 0.3},
                "liveness": {"write": "coalesced", "coalesce_s": 30, "disconnect_after_s": 90},
            },
        }
    )


def polls(out: Path) -> int:
    run = load_run(out)
    summary = run.summary or {}
    return int(summary["endpoints"]["GET /v1/sms/sources/{source_id}/command"]["count"])


def timed(engine, s: Scenario, out: Path) -> tuple[float, float, int]:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    engine(s, out)
    return time.perf_counter() - wall0, time.process_time() - cpu0, polls(out)


def compare_engines(agents: int, simpy_s: float, fast_s: float, reps: int) -> None:
    print(f"\n== fast vs SimPy, {agents:,} agents, 30 s polling ({reps} interleaved pairs)")
    simulate(scenario(100, 60.0, ramp_s=10))  # compile (or load the cache) outside the timings
    ratios, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            des = timed(run_des, scenario(agents, simpy_s, ramp_s=30), Path(tmp) / f"des{rep}")
            fast = timed(run_fast, scenario(agents, fast_s, ramp_s=30), Path(tmp) / f"fast{rep}")
            rate_des, rate_fast = des[2] / des[0], fast[2] / fast[0]
            ratios.append(rate_fast / rate_des)
            rows.append((des, fast))
            print(
                f"  pair {rep + 1}: SimPy {des[2]:,} polls in {des[0]:.1f} s wall ({des[1]:.1f} s CPU) = "
                f"{rate_des:,.0f}/s; fast {fast[2]:,} polls in {fast[0]:.1f} s wall ({fast[1]:.1f} s CPU) = "
                f"{rate_fast:,.0f}/s; ratio {ratios[-1]:.0f}x"
            )
    print(f"  median ratio of polls per wall second: {statistics.median(ratios):.0f}x (target >= 100x)")


def day(agents: int, virtual_s: float) -> None:
    print(f"\n== {agents:,} agents polling every 30 s for {virtual_s:,.0f} virtual seconds (fast engine)")
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu, n = timed(run_fast, scenario(agents, virtual_s), Path(tmp) / "day")
        summary = json.loads((Path(tmp) / "day" / "summary.json").read_text())
    print(
        f"  {summary['requests']['count']:,} requests ({n:,} polls) in {wall:.0f} s wall, {cpu:.0f} s CPU: "
        f"{summary['requests']['count'] / wall / 1e6:.2f} M requests per wall second; "
        f"server busy {summary['server']['busy_fraction']:.3f}; target for a day of 10^6: under 600 s"
    )


def memory(agents: int) -> None:
    s = scenario(agents, 60.0, ramp_s=30)
    width, slots = calendar(s)
    arrays = agents * (AGENT_COLUMNS * 8 + 8 + 8) + slots * 8  # agent rows, sorted-run buffers, calendar heads
    print(f"\n== memory, {agents:,} agents")
    print(f"  the fast engine's arrays: {arrays / agents:.0f} B an agent ({arrays / 2**20:.0f} MiB in all)")
    code = (
        "import psutil, sys; sys.path.insert(0, %r)\n"
        "from benchmarks.scale.bench_scale import scenario\n"
        "from sim.fast.engine import simulate\n"
        "simulate(scenario(100, 60.0, ramp_s=10))\n"
        "p = psutil.Process(); before = p.memory_info().rss\n"
        "simulate(scenario(%d, 60.0, ramp_s=30))\n"
        "import resource; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "print(peak - before)\n"
    ) % (str(ROOT), agents)
    added = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    print(f"  peak resident memory a run adds: {added / agents:.0f} B an agent (histograms and buffers included)")


def sweep(sizes: str, virtual_s: float, jobs: int) -> None:
    base = scenario(10_000, virtual_s).with_overrides(fields={"slo": ["p99 of poll < 200 ms", "error rate < 0.1%"]})
    varies = (parse_vary(f"agents={sizes}", base), parse_vary("workers=32,64", base))
    spec = SweepSpec(base, varies, replications=2, engine="fast", slo=base.slo)
    print(f"\n== sweep: {len(spec.points)} points (agents={sizes} x workers 32,64 x 2 replications), {jobs} processes")
    with tempfile.TemporaryDirectory() as tmp:
        wall0 = time.perf_counter()
        rows = run_sweep(spec, Path(tmp) / "sweep", jobs=jobs)
        wall = time.perf_counter() - wall0
        t0 = time.perf_counter()
        table = capacity_table(rows, list(base.slo))
        print(
            f"  {len(rows)} rows in {wall:.0f} s wall ({wall / len(rows):.1f} s a point); capacity table "
            f"in {time.perf_counter() - t0:.2f} s"
        )
        print(table.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=100_000)
    ap.add_argument("--simpy-s", type=float, default=120.0, help="virtual seconds SimPy simulates")
    ap.add_argument("--fast-s", type=float, default=3600.0, help="virtual seconds the fast engine simulates")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--day-agents", type=int, default=1_000_000)
    ap.add_argument("--day-s", type=float, default=86_400.0)
    ap.add_argument("--skip-day", action="store_true")
    ap.add_argument("--sweep-sizes", default="1e4:1e6:log5", help="the sweep's fleet sizes (a --vary spec)")
    ap.add_argument("--sweep-s", type=float, default=3600.0, help="virtual seconds of each sweep point")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run: 10,000 agents, one pair, a 1-hour 'day'")
    args = ap.parse_args()
    if args.quick:
        args.agents, args.simpy_s, args.fast_s, args.reps = 10_000, 60.0, 600.0, 1
        args.day_agents, args.day_s = 100_000, 3600.0
        args.sweep_sizes, args.sweep_s = "1e3:1e4:log3", 600.0
    print(f"load average before: {os.getloadavg()}")
    compare_engines(args.agents, args.simpy_s, args.fast_s, args.reps)
    memory(args.day_agents)
    if not args.skip_sweep:
        sweep(args.sweep_sizes, args.sweep_s, os.cpu_count() or 1)
    if not args.skip_day:
        day(args.day_agents, args.day_s)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
