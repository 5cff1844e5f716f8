"""Fidelity of the calibrated simulation against the reference server at three load levels.

    .venv/bin/python benchmarks/fidelity/bench_fidelity.py [--seconds N] [--levels 0.2,0.5,0.8] [--quick]

1. **Capacity**: poll-only fleets of the levels' kind (agents polling every `--interval-s`,
   arriving over 2 s), growing (`--probe-agents`, default 400, 800, 1200, 1600 agents, that
   is 800 to 3,200 polls/s offered, `--probe-seconds` each), run with `smsload load` against
   the reference server; the capacity is the highest steady polls/s any of them sustained.
   (A closed loop of a few agents polling back to back reaches more: fewer users cost Locust
   less per request, so a paced fleet at that rate would fall short of it.) The server's CPU
   over the same window says which side saturated: the server (one granian worker: ~100% of
   a core) or the load generator sharing the machine's cores.
2. **Levels**: for each fraction of that capacity, a poll-only fleet paced at that rate
   (agents = rate x interval, `--interval-s`, arriving over 2 s) runs `--seconds` against a
   fresh server (`smsload serve`, 1 worker, SQLite in a temp dir, started here by its PID).
   The server's CPU is sampled (psutil) over the steady window (after `WARMUP_S`), giving its
   CPU per request and so its time outside the handler: overhead = CPU per request - mean
   Server-Timing of the requests sent alone.
3. **Calibration**: `sim.report.calibrate` from the LOWEST level (with that level's measured
   overhead), and, for comparison, from each level itself.
4. **Simulation**: each level's scenario with the calibrated server, `run_des`; compared over
   the same steady window: throughput (all requests, polls) and the poll's p50 and p95
   (from `sim.report.metrics.endpoint_table`). Targets: throughput within 3 %, p50 and p95
   within 15 %.

All traffic goes to 127.0.0.1; every server started here is stopped by its PID. The machine
is shared: the 1-minute load average before and after each level is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks" / "knee"))

from rig import CpuSampler  # noqa: E402  (the server's CPU, sampled; one copy for both rigs)

from sim.des.run import run_des  # noqa: E402
from sim.records import load_run  # noqa: E402
from sim.report import metrics as M  # noqa: E402
from sim.report.analysis import load_generator  # noqa: E402
from sim.report.calibrate import calibrate  # noqa: E402
from sim.report.calibrate_requests import alone  # noqa: E402
from sim.scenario import Scenario, validate_scenario  # noqa: E402
from sim.server.process import run_server  # noqa: E402

TOKEN = "fidelity-bench-token"
POLL = "GET /v1/sms/sources/{source_id}/command"
WARMUP_S = 6.0  # arrival (2 s) and Locust's start-up: left out of every figure


def poll_scenario(name: str, agents: int, interval_s: float, duration_s: float) -> Scenario:
    """A poll-only fleet: agents register over 2 s, then poll every `interval_s` (no jitter: a paced rate)."""
    return validate_scenario(
        {
            "name": name,
            "seed": 5,
            "duration_s": duration_s,
            "fleet": {"agents": agents, "arrival": {"kind": "ramp", "duration_s": 2}},
            "agent": {"poll_interval_s": interval_s, "poll_jitter_s": 0.0, "request_timeout_s": 10},
            "operator": {"tasks": {"kind": "waves", "waves": []}},
            "server": {"workers": 1, "rtt_ms": 1.0},
        },
        source=name,
    )


@dataclass
class Level:
    """One load run and its figures over the steady window."""

    name: str
    scenario: Scenario
    run: Path
    window: tuple[float, float]
    server_cpu_s: float
    load_avg: tuple[float, float]  # 1-minute load average before and after
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / max(self.figures["requests"], 1)

    @property
    def server_util(self) -> float:
        return self.server_cpu_s / (self.window[1] - self.window[0])


def figures(run: Path, window: tuple[float, float]) -> dict[str, float]:
    """Requests/s, polls/s, poll p50 and p95 (ms) of the requests sent in `window`."""
    r = load_run(run).requests
    r = r[(r["t_start_s"] >= window[0]) & (r["t_start_s"] < window[1])]
    table = M.endpoint_table(r, window[1] - window[0], n_boot=100)
    poll = table.loc[POLL]
    lag_ms = (r["t_start_s"] - r["t_sched_s"]).to_numpy(dtype=float) * 1000
    out = {
        "requests": float(len(r)),
        "throughput": float(table.loc[M.ALL, "throughput_per_s"]),
        "poll_throughput": float(poll["throughput_per_s"]),
        "p50": float(poll["p50"]),
        "p95": float(poll["p95"]),
        "lag_p95": float(np.percentile(lag_ms, 95)) if len(r) else 0.0,
        "locust_cpu": float("nan"),
    }
    generator = load_generator(run)  # a load test's own CPU (none for a simulation)
    if generator is not None and len(generator):
        steady = generator[(generator["t_s"] >= window[0]) & (generator["t_s"] < window[1])]
        out["locust_cpu"] = float(steady["cpu_percent"].mean())
    return out


def measure(tmp: Path, scenario: Scenario) -> Level:
    """Run `scenario` with `smsload load` against a fresh reference server; sample its CPU."""
    path, out = tmp / f"{scenario.name}.yaml", tmp / scenario.name
    path.write_text(yaml.safe_dump(scenario.to_dict(), sort_keys=False))
    before = os.getloadavg()[0]
    with run_server(f"sqlite:///{tmp / scenario.name}.sqlite3", [TOKEN], tmp / f"{scenario.name}-server.log") as srv:
        sampler = CpuSampler(srv.pid)
        sampler.start()
        env = {**os.environ, "SMS_AUTH_TOKEN": TOKEN}
        done = subprocess.run(
            [sys.executable, "-m", "sim.cli", "load", str(path), "--host", srv.base_url, "--out", str(out), "--quiet"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=scenario.duration_s + 180,
        )
        sampler.done.set()
        sampler.join()
    if done.returncode != 0:
        raise SystemExit(f"smsload load failed for {scenario.name}: {done.stderr.strip()[-2000:]}")
    window = (WARMUP_S, scenario.duration_s)
    t0 = float(json.loads((out / "manifest.json").read_text())["t0_epoch"])
    level = Level(
        scenario.name,
        scenario,
        out,
        window,
        sampler.cpu_s(t0 + window[0], t0 + window[1]),
        (before, os.getloadavg()[0]),
    )
    level.figures = figures(out, window)
    return level


def find_capacity(tmp: Path, agents: list[int], interval_s: float, seconds: float) -> tuple[float, list[Level]]:
    """Steady polls/s of paced fleets of growing size; the highest is the capacity."""
    probes = []
    for n in agents:
        level = measure(tmp, poll_scenario(f"capacity-{n}", n, interval_s, seconds))
        print(
            f"  capacity probe {n:4d} agents ({n / interval_s:.0f}/s offered): "
            f"{level.figures['poll_throughput']:7.0f} polls/s, p50 "
            f"{level.figures['p50']:.2f} ms, server CPU {level.server_util:.0%} of a core, "
            f"load avg {level.load_avg[0]:.1f}",
            flush=True,
        )
        probes.append(level)
    return max(p.figures["poll_throughput"] for p in probes), probes


def overhead_ms(level: Level) -> float:
    """Server CPU per request minus the mean handler time (Server-Timing) of requests sent alone."""
    r = load_run(level.run).requests
    ok = r[r["ok"]]
    handler = float(ok.loc[alone(r)[r["ok"].to_numpy()], "server_ms"].mean())
    return max(level.cpu_ms_per_request - handler, 0.0)


def simulate(tmp: Path, level: Level, calibrated: Scenario, tag: str) -> dict[str, float]:
    scenario = level.scenario.with_overrides(fields={"server": calibrated.server.model_dump(mode="json")})
    return figures(run_des(scenario, tmp / f"{level.name}-sim-{tag}"), level.window)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="each level's load run (default 60)")
    p.add_argument("--levels", default="0.2,0.5,0.8", help="fractions of the measured capacity")
    p.add_argument("--interval-s", type=float, default=0.5, help="the levels' poll interval (default 0.5)")
    p.add_argument("--probe-agents", default="400,800,1200,1600", help="fleet sizes probed for the capacity")
    p.add_argument("--probe-seconds", type=float, default=20.0)
    p.add_argument("--keep", type=Path, help="keep the run directories here (default: a temp dir, removed)")
    p.add_argument("--quick", action="store_true", help="15 s levels, two 12 s probes: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.probe_agents, args.probe_seconds = 15.0, "300,900", 12.0
    fractions = [float(x) for x in args.levels.split(",")]
    print(f"# fidelity benchmark {date.today()}, {os.cpu_count()} cores, load avg {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fidelity-") as tmp_name:
        tmp = Path(tmp_name) if args.keep is None else args.keep
        tmp.mkdir(parents=True, exist_ok=True)
        capacity, probes = find_capacity(
            tmp, [int(x) for x in args.probe_agents.split(",")], args.interval_s, args.probe_seconds
        )
        print(f"capacity: {capacity:.0f} polls/s (server + Locust on this machine)", flush=True)
        levels = []
        for f in fractions:
            agents = max(int(round(f * capacity * args.interval_s)), 1)
            level = measure(tmp, poll_scenario(f"level-{int(f * 100)}", agents, args.interval_s, args.seconds))
            print(
                f"  level {f:.0%}: {agents} agents every {args.interval_s} s -> {level.figures['poll_throughput']:.0f} "
                f"polls/s, server CPU {level.server_util:.0%}, {level.cpu_ms_per_request * 1000:.0f} µs/request, "
                f"load avg {level.load_avg[0]:.1f}->{level.load_avg[1]:.1f}",
                flush=True,
            )
            levels.append(level)
        lowest = levels[0]
        overhead = overhead_ms(lowest)
        from_lowest = calibrate(lowest.run, lowest.scenario, overhead_ms=overhead, after_s=WARMUP_S)
        rows = []
        for level in levels:
            own = calibrate(level.run, level.scenario, overhead_ms=overhead_ms(level), after_s=WARMUP_S)
            for tag, cal in (("lowest", from_lowest), ("own", own)):
                rows.append((level, tag, simulate(tmp, level, cal.scenario, tag)))
        print(report(capacity, probes, levels, rows, overhead, from_lowest, args))
    return 0


def report(
    capacity: float,
    probes: list[Level],
    levels: list[Level],
    rows: list[tuple[Level, str, dict[str, float]]],
    overhead: float,
    cal: Any,
    args: argparse.Namespace,
) -> str:
    saturated = max(probes, key=lambda p: p.figures["poll_throughput"])
    lines = [
        f"\nCommand: .venv/bin/python benchmarks/fidelity/bench_fidelity.py {shlex.join(sys.argv[1:])}".rstrip(),
        f"Capacity {capacity:.0f} polls/s ({saturated.scenario.fleet.agents} agents; server CPU "
        f"{saturated.server_util:.0%} of a core, Locust {saturated.figures['locust_cpu']:.0f}% there). "
        f"Calibrated from {levels[0].name}: overhead {overhead * 1000:.0f} µs/request (server CPU - handler), "
        f"rtt {cal.rtt.dist.to_spec()['dist']}, poll service median "
        f"{cal.scenario.server.service_ms_for('poll').quantile(0.5) * 1000:.0f} µs.",
        "",
        "| Level | Calibrated from | Polls/s measured | Throughput err | Poll p50 measured | p50 err "
        "| Poll p95 measured | p95 err | Server CPU | Locust CPU | Generator lag p95 | Load avg |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level, tag, sim in rows:
        m = level.figures
        err = {k: sim[k] / m[k] - 1 for k in ("throughput", "p50", "p95")}
        marks = {k: "" if abs(v) <= (0.03 if k == "throughput" else 0.15) else " ✗" for k, v in err.items()}
        lines.append(
            f"| {level.name} ({level.scenario.fleet.agents} agents / {level.scenario.agent.poll_interval_s} s) "
            f"| {'lowest level' if tag == 'lowest' else 'itself'} | {m['poll_throughput']:.0f} "
            f"| {err['throughput']:+.1%}{marks['throughput']} | {m['p50']:.2f} ms | {err['p50']:+.1%}{marks['p50']} "
            f"| {m['p95']:.2f} ms | {err['p95']:+.1%}{marks['p95']} | {level.server_util:.0%} "
            f"| {m['locust_cpu']:.0f}% | {m['lag_p95']:.0f} ms "
            f"| {level.load_avg[0]:.1f}-{level.load_avg[1]:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
