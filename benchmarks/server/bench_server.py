"""Benchmark the reference server's agent endpoints against a plain ASGI app on the same server.

    .venv/bin/python benchmarks/server/bench_server.py [--seconds N] [--sources N] [--reps N] [--quick]

What it measures, in one run:

- `hello`: `hello_app.py`, a few lines of raw ASGI returning a small JSON body, served by
  granian through the reference server's own `_run_granian` (same interface, 1 worker, same
  options). The baseline.
- `poll`: `GET /v1/sms/sources/{id}/command` on `smsload serve` (granian, 1 worker, SQLite
  in a temp dir) with `--sources` registered sources, polling random sources with a valid
  token. A few sources (about 0.5% at the defaults) have a started task, so a START command
  is pending for them (the first poll of each marks it delivered).
- `mix`: 9 polls to 1 `PUT /v3/tasks/{id}/progress` per connection. Each connection owns its
  own started tasks (a fresh set per repetition) and raises their progress one step per
  write, so progress only goes up; every write answered 200 is remembered. After the run,
  with the server stopped, the SQLite file is read: each task's progress must equal the
  highest acknowledged step (or, with wrk, which stops mid-request, a write sent but not yet
  answered at the stop), and the mix runs, the warm-up's included, must have had no error.

Seeding: sources and tasks are written before the server starts, through the control plane
(`ControlPlane.register`, `create_task`, `act(START)`: the same rows the server would write)
straight into the SQLite file, 10,000 per transaction.

Method: both servers run side by side; each load uses `--connections` keep-alive
connections (one request in flight each) for `--seconds`. After a short warm-up, the loads
run interleaved (hello, poll, mix, hello, poll, mix, ...) `--reps` times, so drift on a
shared machine hits all three alike. Server CPU is the user+system time of the server's
process tree (granian's main process and its worker, from psutil) before and after a load,
divided by the responses received; the generator's own CPU is not counted. Reported: the
median per load, and the median over repetitions of the ratio to the hello run of the same
repetition. On a small machine the generator and the server share the cores, so req/s is a
lower bound; CPU per request is the figure to compare.

The generator is wrk when it is on PATH (one thread per connection, `requests.lua`), else a
built-in asyncio client (`loadgen.run_builtin`); the output names the one used. All traffic
goes to 127.0.0.1, and every process started here is stopped by its PID at the end, on
Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil
from loadgen import Job, LoadResult, max_step, run_builtin, run_wrk, step_position, wrk_version

from sim.model.controlplane import ControlPlane, Registration, TaskSpec
from sim.model.lifecycle import Action, OsType, Phase, TaskType, subtask_sequence
from sim.model.liveness import Liveness, LivenessWrite
from sim.server.process import run_server, stop_process, wait_ready
from sim.server.stores.sqlite import SqliteStore

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"
PROJECT = "default"  # a bare --token is this project's
SUBTASKS = list(subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.MIGRATE))
MODES = ("hello", "poll", "mix")
WRITE_EVERY = 10  # mix: 1 request in 10 is a progress write
SEED_BATCH = 10_000


# -- seeding -----------------------------------------------------------------------------------


class _Joined:
    """A store whose transactions all join one open SQLite transaction: lets the control plane
    write thousands of registrations in one commit while seeding."""

    def __init__(self, tx: Any) -> None:
        self._tx = tx

    @contextmanager
    def write(self) -> Iterator[Any]:
        yield self._tx

    read = write


def seed(
    db: Path, n_sources: int, tasks_per_set: int, n_sets: int, rng: random.Random
) -> tuple[list[str], list[list[str]]]:
    """Register `n_sources` sources and create and start `n_sets` x `tasks_per_set` tasks on
    distinct random ones; the source ids and the task ids per set."""
    store = SqliteStore(db)
    now = time.time()
    ids: list[str] = []
    try:
        for first in range(0, n_sources, SEED_BATCH):
            with store.write() as tx:
                plane = ControlPlane(_Joined(tx))  # type: ignore[arg-type]
                for i in range(first, min(first + SEED_BATCH, n_sources)):
                    ids.append(
                        plane.register(
                            PROJECT,
                            Registration(
                                name=f"bench-{i:06d}",
                                os_type=OsType.LINUX,
                                os_version="Ubuntu 22.04",
                                ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                                hostname=f"bench-{i:06d}",
                                agent_version="25.3.0",
                                total_bytes=100 << 30,
                            ),
                            now,
                        )
                    )
        chosen = rng.sample(ids, tasks_per_set * n_sets)
        sets: list[list[str]] = []
        with store.write() as tx:
            plane = ControlPlane(_Joined(tx))  # type: ignore[arg-type]
            for s in range(n_sets):
                tasks = []
                for source_id in chosen[s * tasks_per_set : (s + 1) * tasks_per_set]:
                    task_id = plane.create_task(
                        PROJECT,
                        TaskSpec(name=f"bench-{source_id[:8]}", type=TaskType.MIGRATE_FILE, source_id=source_id),
                        now,
                    )
                    plane.act(PROJECT, task_id, Action.START, now)
                    tasks.append(task_id)
                sets.append(tasks)
    finally:
        store.close()
    return ids, sets


# -- servers and CPU -----------------------------------------------------------------------------


@contextmanager
def run_hello(log_path: Path) -> Iterator[tuple[str, int]]:
    """hello_app.py on a free loopback port: (URL, PID); stopped by PID on exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "hello_app.py"), "--port", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        yield wait_ready(proc, log_path, time.monotonic() + 30), proc.pid
    finally:
        stop_process(proc)


class ProcessTree:
    """CPU seconds (user + system) used by a server process and its workers."""

    def __init__(self, pid: int) -> None:
        root = psutil.Process(pid)
        self.procs = [root, *root.children(recursive=True)]

    def cpu_s(self) -> float:
        total = 0.0
        for p in self.procs:
            t = p.cpu_times()  # raises NoSuchProcess if a worker died: the run is void then
            total += t.user + t.system
        return total


@dataclass
class Sample:
    mode: str
    rep: int
    load: LoadResult
    server_cpu_s: float

    @property
    def cpu_us_per_request(self) -> float:
        return self.server_cpu_s / max(self.load.requests, 1) * 1e6

    @property
    def rps(self) -> float:
        return self.load.requests / self.load.elapsed_s


def measure(job: Job, tree: ProcessTree, generator: str, rep: int) -> Sample:
    cpu0 = tree.cpu_s()
    load = run_wrk(job) if generator == "wrk" else run_builtin(job)
    return Sample(job.mode, rep, load, tree.cpu_s() - cpu0)


# -- verification --------------------------------------------------------------------------------


@dataclass
class Verdict:
    acked_writes: int  # writes answered 200, over all mix runs
    tasks: int  # tasks the mix runs owned (written or not)
    tasks_match: int  # still RUNNING, progress == the highest acknowledged step (or the start)
    tasks_in_flight: int  # progress == a write sent but unanswered when the generator stopped
    tasks_wrong: list[str]  # anything else: an acknowledged write lost, or an unsent one applied
    errors: int  # transport and status errors of the mix runs

    @property
    def ok(self) -> bool:
        return not self.tasks_wrong and self.errors == 0 and self.tasks_match + self.tasks_in_flight == self.tasks


def verify(db: Path, mix_runs: list[LoadResult], tasks: list[str]) -> Verdict:
    """Read each task's progress from the SQLite file and compare it with what was acknowledged."""
    acked: dict[str, int] = {}
    unanswered: dict[str, int] = {}
    for run in mix_runs:  # each run wrote its own set of tasks
        acked.update(run.acked)
        unanswered.update(run.unanswered)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        docs = {tid: json.loads(doc) for tid, doc in con.execute("SELECT id, doc FROM tasks")}
    finally:
        con.close()
    match = in_flight = 0
    wrong = []
    for task in tasks:
        expected = step_position(acked.get(task, 0))  # step 0: the task as started
        doc = docs.get(task)
        final = None if doc is None else (doc["current"], doc["sub_tasks"][doc["current"]]["progress"])
        if doc is not None and doc["state"] == "RUNNING" and final == expected:
            match += 1
        elif doc is not None and task in unanswered and final == step_position(unanswered[task]):
            in_flight += 1
        else:
            wrong.append(f"{task}: acknowledged {expected}, database {final}")
    return Verdict(
        sum(r.writes_ok for r in mix_runs),
        len(tasks),
        match,
        in_flight,
        wrong,
        sum(r.transport_errors + r.status_errors for r in mix_runs),
    )


# -- report --------------------------------------------------------------------------------------


def versions(generator: str) -> str:
    gen = wrk_version() if generator == "wrk" else "built-in asyncio client (wrk not found)"
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"granian {metadata.version('granian')}, starlette {metadata.version('starlette')}, "
        f"SQLite {sqlite3.sqlite_version}; generator: {gen}"
    )


def report(samples: list[Sample], verdict: Verdict, command: str, machine: str, args: argparse.Namespace) -> str:
    by_mode = {m: [s for s in samples if s.mode == m] for m in MODES}
    hello_by_rep = {s.rep: s for s in by_mode["hello"]}
    lines = [
        f"date {date.today().isoformat()}; {machine}",
        f"command: {command}",
        f"{args.connections} keep-alive connections, {args.seconds:g} s per load, {args.reps} repetitions "
        f"interleaved; {args.sources} sources; medians (ratio: median of per-repetition ratios)",
        "",
        "| load | server CPU µs/request | req/s | CPU/request vs hello | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    ratios: dict[str, float] = {}
    for mode, runs in by_mode.items():
        ratio = statistics.median(s.cpu_us_per_request / hello_by_rep[s.rep].cpu_us_per_request for s in runs)
        ratios[mode] = ratio
        errors = sum(s.load.transport_errors + s.load.status_errors for s in runs)
        cpu = statistics.median(s.cpu_us_per_request for s in runs)
        rps = statistics.median(s.rps for s in runs)
        label = {
            "hello": "hello (plain ASGI)",
            "poll": "poll `GET /v1/sms/sources/{id}/command`",
            "mix": "mix 90% poll / 10% `PUT /v3/tasks/{id}/progress`",
        }[mode]
        lines.append(f"| {label} | {cpu:.1f} | {rps:,.0f} | {ratio:.2f} x | {errors} |")
    lines += ["", "per repetition (server CPU µs/request, req/s, generator CPU µs/request):"]
    for s in samples:
        lines.append(
            f"  rep {s.rep} {s.mode:5s} {s.cpu_us_per_request:7.1f} µs  {s.rps:8,.0f} req/s  "
            f"generator {s.load.generator_cpu_s / max(s.load.requests, 1) * 1e6:6.1f} µs  "
            f"({s.load.requests} requests)"
        )
    exhausted = sum(s.load.exhausted for s in samples)
    lines += [
        "",
        f"command endpoint CPU/request = {ratios['poll']:.2f} x hello (target <= 2x on SQLite)",
        f"90/10 mix CPU/request = {ratios['mix']:.2f} x hello",
        f"mix verification: {verdict.acked_writes} writes acknowledged to {verdict.tasks} tasks; "
        f"database == highest acknowledged on {verdict.tasks_match}, == a write unanswered at the "
        f"generator's stop on {verdict.tasks_in_flight}, wrong on {len(verdict.tasks_wrong)}; "
        f"mix errors {verdict.errors}: {'PASS' if verdict.ok else 'FAIL'}",
    ]
    if exhausted:
        lines.append(
            f"note: {exhausted} writes became polls because a connection's tasks were at their last "
            f"step (raise the task count)"
        )
    lines += [f"  {w}" for w in verdict.tasks_wrong[:10]]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=15.0, help="length of each measured load (default 15)")
    p.add_argument("--sources", type=int, default=100_000, help="registered sources (default 100000)")
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions (default 3)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (default 32)")
    p.add_argument(
        "--generator",
        choices=("auto", "wrk", "builtin"),
        default="auto",
        help="load generator: wrk if on PATH (auto), or the built-in asyncio client",
    )
    p.add_argument("--quick", action="store_true", help="a short check: 3 s loads, 10000 sources, 1 repetition")
    p.add_argument(
        "--liveness",
        choices=[m.value for m in LivenessWrite],
        default=LivenessWrite.OFF.value,
        help="how the server's polls record visits (smsload serve --liveness; default off: read-only polls, "
        "as in the figures recorded before liveness existed)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.sources, args.reps = 3.0, 10_000, 1
    if args.generator == "auto":
        args.generator = "wrk" if wrk_version() else "builtin"
    elif args.generator == "wrk" and not wrk_version():
        p.error("--generator wrk: wrk is not on PATH")
    if args.seconds <= 0 or args.seconds > 600 or args.reps < 1 or not 1 <= args.connections <= 1024:
        p.error("--seconds 0..600, --reps >= 1, --connections 1..1024")
    return args


def _shown(path: str) -> str:
    """A path as typed from the current directory when it is below it (`.venv/bin/python`)."""
    rel = os.path.relpath(os.path.abspath(path))
    return path if rel.startswith("..") else rel


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join([_shown(sys.executable), _shown(__file__), *(sys.argv[1:] if argv is None else argv)])
    machine = versions(args.generator)
    print(machine, flush=True)
    # Enough tasks that no connection runs out of progress steps at up to ~40,000 req/s.
    writes_per_conn = 40_000 / WRITE_EVERY / args.connections * args.seconds
    tasks_per_conn = int(writes_per_conn // max_step(SUBTASKS)) + 2
    n_sets = args.reps + 1  # set 0 is the warm-up's
    if tasks_per_conn * args.connections * n_sets > args.sources:
        raise SystemExit(
            f"--sources: at least {tasks_per_conn * args.connections * n_sets} needed "
            f"(each task has a source of its own)"
        )
    rng = random.Random(2)
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        tmpdir = Path(tmp)
        db = tmpdir / "sms.sqlite3"
        t0 = time.monotonic()
        ids, sets = seed(db, args.sources, tasks_per_conn * args.connections, n_sets, rng)
        print(
            f"seeded {len(ids)} sources and {sum(map(len, sets))} started tasks in "
            f"{time.monotonic() - t0:.1f} s (control plane -> SQLite, {SEED_BATCH} per transaction)",
            flush=True,
        )
        ids_file, tasks_file = tmpdir / "sources.txt", tmpdir / "tasks.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        tasks_file.write_text(
            "".join(
                f"{s} {i % args.connections + 1} {t}\n" for s, tasks in enumerate(sets) for i, t in enumerate(tasks)
            )
        )

        samples: list[Sample] = []
        mix_runs: list[LoadResult] = []
        with contextlib.ExitStack() as stack:
            hello_url, hello_pid = stack.enter_context(run_hello(tmpdir / "hello.log"))
            # A long disconnect_after_s: whatever the load, no source here should show as disconnected.
            liveness = Liveness(LivenessWrite(args.liveness), disconnect_after_s=3600.0)
            sms = stack.enter_context(run_server(f"sqlite:///{db}", [TOKEN], tmpdir / "serve.log", liveness=liveness))
            print(f"smsload serve --liveness {args.liveness}", flush=True)
            count = httpx.get(f"{sms.base_url}/v3/sources?limit=1", headers={"X-Auth-Token": TOKEN}).json()["count"]
            assert count == len(ids), f"the server sees {count} sources, expected {len(ids)}"
            trees = {"hello": ProcessTree(hello_pid), "sms": ProcessTree(sms.pid)}

            def job(mode: str, task_set: int, seconds: float) -> Job:
                return Job(
                    mode,
                    hello_url if mode == "hello" else sms.base_url,
                    TOKEN,
                    args.connections,
                    seconds,
                    ids_file,
                    tasks_file,
                    task_set,
                    WRITE_EVERY,
                    SUBTASKS,
                )

            for mode in MODES:  # warm-up: first-request costs, caches, SQLite pages
                warm = measure(
                    job(mode, 0, min(2.0, args.seconds)),
                    trees["hello" if mode == "hello" else "sms"],
                    args.generator,
                    0,
                )
                if mode == "mix":
                    mix_runs.append(warm.load)
            for rep in range(1, args.reps + 1):
                for mode in MODES:
                    s = measure(
                        job(mode, rep, args.seconds), trees["hello" if mode == "hello" else "sms"], args.generator, rep
                    )
                    samples.append(s)
                    if mode == "mix":
                        mix_runs.append(s.load)
                    print(
                        f"rep {rep}/{args.reps} {mode:5s}: {s.cpu_us_per_request:7.1f} µs CPU/request, "
                        f"{s.rps:8,.0f} req/s",
                        flush=True,
                    )
        # Both servers are stopped here: the database is read as it was left.
        verdict = verify(db, mix_runs, [t for tasks in sets for t in tasks])
    print()
    print(report(samples, verdict, command, machine, args))
    return 0 if verdict.ok else 1


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops the servers too, as Ctrl-C does
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("interrupted: the servers and the generator were stopped", file=sys.stderr)
        raise SystemExit(130) from None
