"""Benchmark the load generator: the agent user's CPU per request and memory per agent vs a plain FastHttpUser.

    .venv/bin/python benchmarks/loadgen/bench_loadgen.py [--agents N] [--interval-s S] [--seconds N]
        [--reps N] [--quick]

What it measures, in one run, at the same paced load (N users, one poll each every S seconds:
N/S requests per second; defaults 10,000 users every 30 s, about 333 req/s):

- `plain`: `plain_locustfile.py`, a bare FastHttpUser that registers a source once
  (`POST /v3/sources`), waits a uniform random phase within one interval, then sends
  `GET /v1/sms/sources/{id}/command` with the token every S seconds (paced like Locust's
  `constant_pacing`, but from its first poll). The baseline: what Locust itself costs for this
  request at this rate.
- `agents`: `agents_locustfile.py`, which is `loadtests/locustfile.py` as shipped (AgentUser
  stepping the `sim.model` agent, FleetShape, the request rows written to a run directory
  every second, the generator samples), on a poll-only scenario written here: N agents
  arriving over a ramp, poll interval S without jitter, no operator tasks, so after their
  registration the agents send only the poll, as the plain user does. The operator user
  starts and stops at once (it has no work).

Both run as Locust child processes (importing locust monkey-patches the process, so this
script does not), one standalone process each (no distributed mode), headless with
`--only-summary`, in a process group of their own, against one reference server
(`smsload serve`, granian, 1 worker, SQLite in a temp dir) on a free loopback port. Both
locustfiles import `probe.py`, which writes one line at Locust's init (before any user
exists) and then every second: the process's CPU time (user + system, psutil), RSS and
Locust's request counts, all read at the same instant.

Method: plain and agents runs alternate (plain, agents, plain, agents, ...) `--reps` times.
In each run, once every user is spawned, the benchmark waits one poll interval plus 5 s (every
user has registered and polls at its own phase), then measures a window of `--seconds`
between two probe lines: CPU µs per request = CPU seconds spent / requests Locust counted in
the window; requests/s = those requests / window. Memory per user = (RSS at the end of the
window - RSS at init, before spawning) / N, the target's measure; and, per pair of runs, an
agent's extra memory over a plain user = the difference of the two (not of the RSS at the
window's end: the agents' process imports pyarrow and `sim`, ~100 MB before any user). The reported
figure is the median over repetitions, and the ratio the median of the per-repetition
ratios (agents / plain of the same repetition). Checked along the way: the request mix of
each window (only polls; for the agents from the run directory's rows), failures, the
agents' send lag (`t_start - t_sched` from their rows), and whether the server kept up
(requests/s achieved vs N/S, latency). The machine's cores are shared by the server, the
generator and whatever else runs; the server's CPU in the window is printed for that reason.

Connections: both users keep one keep-alive connection each, but a poll finds it closed,
and opens a new one (both users alike), when it was idle for 30 s or more (granian closes
idle HTTP/1 connections after its 30 s header-read timeout) or when its file descriptor is
1024 or above (geventhttpclient 2.6.1 checks a pooled socket with select(), which refuses
such descriptors, and takes the error for a dead socket): at the default load nearly every
poll reconnects; with `--agents 1000 --interval-s 3` (the same 333 req/s) hardly any does.

`--quick`: 1,000 users every 10 s, 15 s windows, one pair: a smoke run, not a figure to record.

`--connections`: agents only, "before" against "after" (issue 11), alternating: before =
geventhttpclient's own select() check of pooled sockets (`$BENCH_SOCKET_CHECK=select`) and a
server closing idle connections after 30 s (granian's default, `--idle-timeout-s 30`); after =
`loadtests.pooled`'s poll() check and the idle timeout `smsload load` gives the embedded server
for this scenario (`loadtests.run.idle_timeout_s`: 65 s). Each has its own server. Besides CPU
per request it reports new connections per poll (sockets geventhttpclient opened in the window
/ requests) and the machine's load average at the window's end.

Targets (issue 4): agents at most 1.3x the plain user's CPU per request, at most 40 KB per
agent. All traffic stays on 127.0.0.1; every process started here is stopped by its process
group or PID at the end, on Ctrl-C and SIGTERM too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

import psutil
import pyarrow.compute as pc
import pyarrow.parquet as pq

from loadtests.processes import LocustProcesses, child_env
from loadtests.run import idle_timeout_s
from sim.scenario import parse_scenario
from sim.server.process import run_server

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"
SETTLE_S = 5.0  # after spawn + one interval, before the window opens
REGISTER_PER_S = 150.0  # arrival ramp: registrations per second (one SQLite commit each; ~260/s is the most on 2 cores)
KINDS = ("plain", "agents")
CONNECTION_KINDS = (
    "before",
    "after",
)  # --connections: agents with the dependency's check and a 30 s idle timeout, or ours


@dataclass
class Line:
    t: float
    cpu_s: float
    rss: int
    requests: int
    failures: int
    polls: int
    users: int
    response_ms: float  # sum of the response times Locust counted
    opened: int = 0  # connections geventhttpclient opened so far

    @staticmethod
    def parse(text: str) -> Line:
        return Line(*json.loads(text))


@dataclass
class Run:
    kind: str
    rep: int
    users: int
    target_rps: float
    init: Line
    a: Line
    b: Line
    server_cpu_s: float
    host_cpu_percent: float
    register_in_window: int = 0  # agents: non-poll rows in the window, from the run directory
    rows_in_window: int = -1
    lag_ms: tuple[float, float, float] = (float("nan"),) * 3  # agents: median, p99, max send lag
    latency_ms: tuple[float, float] = (float("nan"),) * 2  # agents: median, p99 latency
    agents_polling: int = -1  # agents: distinct agent ids among the window's rows
    cpu_warnings: int = 0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # at the window's end

    @property
    def connections_per_request(self) -> float:
        return (self.b.opened - self.a.opened) / max(self.requests, 1)

    @property
    def window_s(self) -> float:
        return self.b.t - self.a.t

    @property
    def requests(self) -> int:
        return self.b.requests - self.a.requests

    @property
    def cpu_us_per_request(self) -> float:
        return (self.b.cpu_s - self.a.cpu_s) / max(self.requests, 1) * 1e6

    @property
    def cpu_percent(self) -> float:
        return (self.b.cpu_s - self.a.cpu_s) / self.window_s * 100

    @property
    def rps(self) -> float:
        return self.requests / self.window_s

    @property
    def kb_per_user(self) -> float:
        return (self.b.rss - self.init.rss) / self.users / 1024

    @property
    def mean_latency_ms(self) -> float:
        return (self.b.response_ms - self.a.response_ms) / max(self.requests, 1)

    @property
    def failures(self) -> int:
        return self.b.failures - self.a.failures

    @property
    def non_poll(self) -> int:
        return (self.b.requests - self.a.requests) - (self.b.polls - self.a.polls)


def write_scenario(path: Path, agents: int, interval_s: float, ramp_s: float, duration_s: float) -> None:
    """A poll-only scenario: agents over a ramp, no jitter, no operator tasks."""
    path.write_text(f"""\
name: bench-loadgen
description: poll-only fleet for benchmarks/loadgen
seed: 1
duration_s: {duration_s}
fleet:
  agents: {agents}
  arrival: {{kind: ramp, duration_s: {ramp_s}}}
agent:
  poll_interval_s: {interval_s}
  poll_jitter_s: 0
  request_timeout_s: 30
operator:
  tasks: {{kind: waves, waves: []}}
""")


def read_lines(path: Path) -> list[Line]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [Line.parse(x) for x in lines if x.endswith("]")]  # the last one may be half-written


def server_cpu_s(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def one_run(kind: str, rep: int, args: argparse.Namespace, base_url: str, server_pid: int, tmp: Path) -> Run:
    n, s = args.agents, args.interval_s
    ramp_s = max(5.0, n / REGISTER_PER_S)
    spawn_timeout = ramp_s * 4 + 60
    backstop_s = spawn_timeout + s + SETTLE_S + args.seconds + 60  # Locust stops itself by then at the latest
    run_dir = tmp / f"{kind}-{rep}"
    run_dir.mkdir()
    probe_path = run_dir / "probe.jsonl"
    env = child_env(TOKEN)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env["PYTHONPATH"]])
    env.update(BENCH_PROBE=str(probe_path), BENCH_INTERVAL_S=repr(s))
    if kind == "before":
        env["BENCH_SOCKET_CHECK"] = "select"
    common = ["--headless", "--only-summary", "--host", base_url]
    if kind == "plain":
        cmd = [
            "-f",
            str(HERE / "plain_locustfile.py"),
            *common,
            "-u",
            str(n),
            "-r",
            f"{n / ramp_s:g}",
            "-t",
            f"{backstop_s:.0f}s",
        ]
    else:
        scenario = run_dir / "scenario.yaml"
        write_scenario(scenario, n, s, ramp_s, backstop_s)
        cmd = [
            "-f",
            str(HERE / "agents_locustfile.py"),
            *common,
            "--scenario",
            str(scenario),
            "--sms-out",
            str(run_dir / "run"),
        ]
    log_path = run_dir / "locust.log"
    procs = LocustProcesses(log_path, None).start(cmd, env, 0)
    try:
        deadline = time.monotonic() + spawn_timeout
        spawned = None
        while spawned is None:
            if procs.main.poll() is not None:
                raise RuntimeError(
                    f"{kind}: Locust exited early ({procs.main.returncode}); see the tail of its log:\n"
                    + "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: {n} users not spawned within {spawn_timeout:.0f} s")
            spawned = next((x for x in read_lines(probe_path) if x.users >= n), None)
            time.sleep(0.2)
        open_at = spawned.t + s + SETTLE_S
        a = b = None
        cpu_a = 0.0
        while b is None:
            if procs.main.poll() is not None:
                raise RuntimeError(f"{kind}: Locust exited during the window ({procs.main.returncode})")
            lines = read_lines(probe_path)
            if a is None and (a := next((x for x in lines if x.t >= open_at), None)) is not None:
                cpu_a = server_cpu_s(server_pid)
                psutil.cpu_percent(None)
            if a is not None:
                b = next((x for x in lines if x.t >= a.t + args.seconds), None)
            if b is None:
                time.sleep(0.2)
        host = psutil.cpu_percent(None)
        load_average = os.getloadavg()
        server_s = server_cpu_s(server_pid) - cpu_a
        init = read_lines(probe_path)[0]
    finally:
        if procs.main.poll() is None:  # also on Ctrl-C: the agents' run directory is written on SIGTERM
            os.killpg(procs.main.pid, signal.SIGTERM)
        procs.stop(grace_s=60.0)  # waits, then SIGTERM and SIGKILL to the process group
    run = Run(kind, rep, n, n / s, init, a, b, server_s, host, load_average=load_average)
    run.cpu_warnings = log_path.read_text(errors="replace").count("CPU usage above")
    if kind != "plain":
        agents_rows(run, run_dir / "run")
    return run


def agents_rows(run: Run, run_dir: Path) -> None:
    """The agents' window from their own rows: the request mix and the send lag."""
    t0 = json.loads((run_dir / "manifest.json").read_text())["t0_epoch"]
    table = pq.read_table(
        run_dir / "requests.parquet", columns=["agent_id", "endpoint", "t_sched_s", "t_start_s", "latency_ms"]
    )
    end = pc.add(pc.add(table["t_start_s"], t0), pc.divide(table["latency_ms"], 1000.0))
    inside = table.filter(pc.and_(pc.greater(end, run.a.t), pc.less_equal(end, run.b.t)))
    run.rows_in_window = inside.num_rows
    run.register_in_window = (
        inside.num_rows - pc.sum(pc.equal(inside["endpoint"], "/v1/sms/sources/{source_id}/command")).as_py()
    )
    lag = sorted(pc.multiply(pc.subtract(inside["t_start_s"], inside["t_sched_s"]), 1000.0).to_pylist())
    if lag:
        run.lag_ms = (statistics.median(lag), _p99(lag), lag[-1])
        latency = sorted(inside["latency_ms"].to_pylist())
        run.latency_ms = (statistics.median(latency), _p99(latency))
    run.agents_polling = len(pc.unique(inside["agent_id"]))


def _p99(ordered: list[float]) -> float:
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def versions() -> str:
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"locust {metadata.version('locust')}, gevent {metadata.version('gevent')}, "
        f"geventhttpclient {metadata.version('geventhttpclient')}, granian {metadata.version('granian')}"
    )


def report(runs: list[Run], args: argparse.Namespace, command: str, machine: str) -> str:
    by = {k: [r for r in runs if r.kind == k] for k in KINDS}
    plain_by_rep = {r.rep: r for r in by["plain"]}
    n = args.agents

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    cpu_ratio = med([r.cpu_us_per_request / plain_by_rep[r.rep].cpu_us_per_request for r in by["agents"]])
    extra_kb = med([r.kb_per_user - plain_by_rep[r.rep].kb_per_user for r in by["agents"]])
    lines = [
        f"date {date.today().isoformat()}; {machine}",
        f"command: {command}",
        f"{n:,} users, one poll each every {args.interval_s:g} s (target {n / args.interval_s:,.1f} req/s); "
        f"{args.seconds:g} s windows; {args.reps} repetitions interleaved (plain, agents, ...); medians",
        "",
        "| user | generator CPU µs/request | CPU vs plain | req/s achieved | generator CPU % of a core | "
        "RSS MB (init -> end) | KB/user over init | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label in (("plain", "plain FastHttpUser"), ("agents", "AgentUser (loadtests/)")):
        rs = by[kind]
        ratio = "1.00 x" if kind == "plain" else f"**{cpu_ratio:.2f} x**"
        lines.append(
            f"| {label} | {med([r.cpu_us_per_request for r in rs]):.0f} | {ratio} | {med([r.rps for r in rs]):.1f} | "
            f"{med([r.cpu_percent for r in rs]):.0f} | {med([r.init.rss / 1e6 for r in rs]):.0f} -> "
            f"{med([r.b.rss / 1e6 for r in rs]):.0f} | {med([r.kb_per_user for r in rs]):.1f} | "
            f"{sum(r.failures for r in rs)} |"
        )
    lines += ["", "per run:"]
    for r in runs:
        extra = ""
        if r.kind != "plain":
            extra = (
                f"; rows in window {r.rows_in_window} (non-poll {r.register_in_window}) from {r.agents_polling} "
                f"agents, latency ms median {r.latency_ms[0]:.1f} p99 {r.latency_ms[1]:.1f}, send lag ms "
                f"median {r.lag_ms[0]:.1f} p99 {r.lag_ms[1]:.1f} max {r.lag_ms[2]:.1f}"
            )
        lines.append(
            f"  rep {r.rep} {r.kind:6s} {r.cpu_us_per_request:6.0f} µs/req  {r.rps:6.1f} req/s "
            f"({r.requests} in {r.window_s:.1f} s, non-poll {r.non_poll}, failures {r.failures}, mean latency "
            f"{r.mean_latency_ms:.1f} ms)  "
            f"RSS {r.init.rss / 1e6:.0f} -> {r.b.rss / 1e6:.0f} MB = {r.kb_per_user:.1f} KB/user  "
            f"server CPU {r.server_cpu_s / r.window_s * 100:.0f}% of a core "
            f"({r.server_cpu_s / max(r.requests, 1) * 1e6:.0f} µs/req), machine {r.host_cpu_percent:.0f}%, "
            f"Locust CPU warnings {r.cpu_warnings}{extra}"
        )
    agent_kb = med([r.kb_per_user for r in by["agents"]])
    achieved = min(r.rps for r in runs) / (n / args.interval_s)
    lines += [
        "",
        f"agent CPU/request = {cpu_ratio:.2f} x plain (target <= 1.3x): {'PASS' if cpu_ratio <= 1.3 else 'OVER'}",
        f"agent memory = {agent_kb:.1f} KB/agent over the process before spawning (target <= 40 KB): "
        f"{'PASS' if agent_kb <= 40 else 'OVER'}; {extra_kb:.1f} KB/agent more than a plain user",
        f"server kept up: lowest window rate {achieved:.1%} of the target rate",
    ]
    return "\n".join(lines)


def connection_runs(args: argparse.Namespace) -> list[Run]:
    """Alternating before/after agent runs, each kind against its own server (its idle timeout)."""
    ramp_s = max(5.0, args.agents / REGISTER_PER_S)
    scenario = parse_scenario(
        f"{{name: c, duration_s: 600, fleet: {{agents: {args.agents}, arrival: {{kind: ramp, duration_s: {ramp_s}}}}}, "
        f"agent: {{poll_interval_s: {args.interval_s}}}}}",
        "bench",
    )
    idle = {"before": 30.0, "after": idle_timeout_s(scenario)}
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as tmp, contextlib.ExitStack() as stack:
        tmpdir = Path(tmp)
        servers = {}
        for kind in CONNECTION_KINDS:
            servers[kind] = stack.enter_context(
                run_server(
                    f"sqlite:///{tmpdir / f'{kind}.sqlite3'}",
                    [TOKEN],
                    tmpdir / f"serve-{kind}.log",
                    extra=("--idle-timeout-s", f"{idle[kind]:g}"),
                )
            )
            print(
                f"{kind}: reference server {servers[kind].base_url} (PID {servers[kind].pid}), idle timeout "
                f"{idle[kind]:g} s",
                flush=True,
            )
        for rep in range(1, args.reps + 1):
            for kind in CONNECTION_KINDS:
                server = servers[kind]
                r = one_run(kind, rep, args, server.base_url, server.pid, tmpdir)
                runs.append(r)
                print(
                    f"rep {rep}/{args.reps} {kind:6s}: {r.cpu_us_per_request:6.0f} µs CPU/request, "
                    f"{r.connections_per_request:.3f} new connections/request, {r.rps:6.1f} req/s, "
                    f"load average {r.load_average[0]:.2f}",
                    flush=True,
                )
    return runs


def connection_report(runs: list[Run], args: argparse.Namespace, command: str, machine: str) -> str:
    n = args.agents
    med = statistics.median
    lines = [
        f"date {date.today().isoformat()}; {machine}",
        f"command: {command}",
        f"{n:,} agents, one poll each every {args.interval_s:g} s (target {n / args.interval_s:,.1f} req/s); "
        f"{args.seconds:g} s windows; {args.reps} repetitions interleaved (before, after, ...); medians",
        "",
        "| agents | new connections per request | generator CPU µs/request | req/s achieved | generator CPU % "
        "of a core | server CPU % of a core | machine CPU % | load average (1 min) | failures |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label in (("before", "before: select() check, idle 30 s"), ("after", "after: poll() check, idle 65 s")):
        rs = [r for r in runs if r.kind == kind]
        lines.append(
            f"| {label} | {med([r.connections_per_request for r in rs]):.3f} | "
            f"{med([r.cpu_us_per_request for r in rs]):.0f} | {med([r.rps for r in rs]):.1f} | "
            f"{med([r.cpu_percent for r in rs]):.0f} | {med([r.server_cpu_s / r.window_s * 100 for r in rs]):.0f} | "
            f"{med([r.host_cpu_percent for r in rs]):.0f} | {med([r.load_average[0] for r in rs]):.2f} | "
            f"{sum(r.failures for r in rs)} |"
        )
    lines += ["", "per run:"]
    for r in runs:
        lines.append(
            f"  rep {r.rep} {r.kind:6s} {r.connections_per_request:.3f} conn/req {r.cpu_us_per_request:6.0f} µs/req "
            f"{r.rps:6.1f} req/s ({r.requests} in {r.window_s:.1f} s, failures {r.failures}), latency ms median "
            f"{r.latency_ms[0]:.1f} p99 {r.latency_ms[1]:.1f}, send lag ms p99 {r.lag_ms[1]:.1f}, server CPU "
            f"{r.server_cpu_s / r.window_s * 100:.0f}%, machine {r.host_cpu_percent:.0f}%, load average "
            f"{' '.join(f'{x:.2f}' for x in r.load_average)}, Locust CPU warnings {r.cpu_warnings}"
        )
    return "\n".join(lines)


def _shown(path: str) -> str:
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=10_000, help="users per run, plain and agents alike (default 10000)")
    p.add_argument("--interval-s", type=float, default=30.0, help="seconds between one user's polls (default 30)")
    p.add_argument("--seconds", type=float, default=60.0, help="measured window per run (default 60)")
    p.add_argument("--reps", type=int, default=3, help="interleaved plain/agents pairs (default 3)")
    p.add_argument("--quick", action="store_true", help="a short check: 1000 users every 10 s, 15 s windows, 1 pair")
    p.add_argument(
        "--connections",
        action="store_true",
        help="agents before/after the pooled-socket fix and the idle timeout: new connections per poll, CPU",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.agents, args.interval_s, args.seconds, args.reps = 1000, 10.0, 15.0, 1
    if not 1 <= args.agents <= 50_000 or not 0 < args.interval_s <= 600 or not 0 < args.seconds <= 600 or args.reps < 1:
        p.error("--agents 1..50000, --interval-s 0..600, --seconds 0..600, --reps >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join([_shown(sys.executable), _shown(__file__), *(sys.argv[1:] if argv is None else argv)])
    machine = versions()
    print(machine, flush=True)
    runs: list[Run] = []
    if args.connections:
        runs = connection_runs(args)
        print()
        print(connection_report(runs, args, command, machine))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as tmp:
        tmpdir = Path(tmp)
        with run_server(f"sqlite:///{tmpdir / 'sms.sqlite3'}", [TOKEN], tmpdir / "serve.log") as server:
            print(f"reference server {server.base_url} (PID {server.pid})", flush=True)
            for rep in range(1, args.reps + 1):
                for kind in KINDS:
                    r = one_run(kind, rep, args, server.base_url, server.pid, tmpdir)
                    runs.append(r)
                    print(
                        f"rep {rep}/{args.reps} {kind:6s}: {r.cpu_us_per_request:6.0f} µs CPU/request, "
                        f"{r.rps:6.1f} req/s, {r.kb_per_user:5.1f} KB/user",
                        flush=True,
                    )
    print()
    print(report(runs, args, command, machine))
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops Locust and the server too, as Ctrl-C does
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted: Locust and the server were stopped", file=sys.stderr)
        raise SystemExit(130) from None
