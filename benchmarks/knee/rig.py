"""The knee rig: load levels against a reference server that, not the generator, saturates.

Used by `bench_knee.py` (the fidelity table) and by `tests/benchmarks/test_knee_rig.py` (a
small version). One level = one `smsload load` of a paced fleet against a fresh `smsload
serve` started here with the rig's limits and stopped by its PID:

- the server limited by `server_args` (`--store-latency-ms lognormal:4,0.3` by default: one
  worker blocked ~4 ms per store transaction is one server of an M/G/1 queue with a capacity
  of ~230 requests/s; or `--cpu-quota`), on core 1 (`--cpus 1`);
- Locust on core 0 (`smsload load --generator-cpus 0`), so the two never compete for a core;
- the evidence that the server was the bottleneck, per level: its busy fraction (summed
  Server-Timing over the window: the store's delay and the handler, while the event loop is
  blocked), its CPU (psutil, process tree), the generator's CPU (generator.parquet, % of one
  core) and lag p95 (t_start_s - t_sched_s).

The fleet: agents poll every `POLL_S` (no jitter: a paced rate); a tenth of them migrate one
huge disk for the whole run and report progress every `PROGRESS_S` (the progress write).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pgpin import BackendPinner, application_name, cpus_of  # noqa: E402

from sim.des.run import run_des  # noqa: E402
from sim.records import load_run, quantiles  # noqa: E402
from sim.report.analysis import load_generator  # noqa: E402
from sim.report.calibrate_requests import first_in  # noqa: E402
from sim.scenario import Scenario, load_scenario, validate_scenario  # noqa: E402
from sim.server.process import run_server  # noqa: E402

TOKEN = "knee-rig-token"
POLL = "/v1/sms/sources/{source_id}/command"
PROGRESS = "/v3/tasks/{task_id}/progress"
POLL_S = 1.0
PROGRESS_S = 1.0
# Each report's interval is PROGRESS_S +- this. The migrations begin in one operator wave, whose
# queue releases their first reports together: without jitter they then report in lockstep all
# run long, bunched differently in each run (10 of 16 within 200 ms of the second in one measured
# run, spread in its simulation), and each report waits behind the others.
PROGRESS_JITTER_S = 0.3
MIGRATING = 0.1  # of the agents, migrating all run long: progress writes
# Left out of every figure: the arrival, then SETTLE_S for the task wave at its end (the operator
# creates and starts a task per migrating agent, one request after another; against the real
# server that burst takes ~2.5 s at 75% and its queue drains by ~6 s after the wave, against ~1 s
# simulated: the operator's requests cost two to three store transactions and wait behind the
# queue twice, once more for their body) and Locust's start-up.
SETTLE_S = 6.0
WARMUP_S = 2.0 + SETTLE_S  # the default fleet's: a 2 s arrival
DEFAULT_SERVER_ARGS = ("--store-latency-ms", "lognormal:4,0.3", "--cpus", "1")
GENERATOR_CPUS = "0"
SEED = 5  # the fleets' scenario seed (a repeated level's: SEED + its repeat)


def fleet(
    name: str, agents: int, duration_s: float, *, seed: int = SEED, ramp_s: float = 2.0, wave_at_s: float | None = None
) -> Scenario:
    """`agents` polling every POLL_S; MIGRATING of them migrate all run long and report progress.
    The operator starts their migrations at `wave_at_s` (default: at the end of the fleet's arrival,
    or half way through the run if sooner), from the sources registered by then."""
    tasks = max(1, round(MIGRATING * agents))
    wave_at = min(ramp_s, duration_s / 2) if wave_at_s is None else wave_at_s
    return validate_scenario(
        {
            "name": name,
            "seed": seed,
            "duration_s": duration_s,
            "fleet": {"agents": agents, "arrival": {"kind": "ramp", "duration_s": ramp_s}, "disk_gb": 100000},
            "agent": {
                "poll_interval_s": POLL_S,
                "poll_jitter_s": 0.0,
                "progress_interval_s": PROGRESS_S,
                "progress_jitter_s": PROGRESS_JITTER_S,
                "bandwidth_mbps": 1,
                "subtask_s": 0,
                "request_timeout_s": 10,
            },
            "operator": {
                "tasks": {"kind": "waves", "waves": [{"at_s": wave_at, "count": tasks}]},
                "check_interval_s": 5,
                "delete_at_end": False,
            },
            "server": {"workers": 1, "rtt_ms": 1.0},
        },
        source=name,
    )


def arrival_s(scenario: Scenario) -> float:
    """How long the fleet takes to arrive (0: all at once)."""
    return float(getattr(scenario.fleet.arrival, "duration_s", 0.0))


def warmup_s(scenario: Scenario) -> float:
    """The start of the steady window: the fleet's arrival and the task wave at its end, SETTLE_S."""
    return max(WARMUP_S, arrival_s(scenario) + SETTLE_S)


def agents_for(rate_per_s: float) -> int:
    """Agents whose polls and progress writes offer `rate_per_s` requests per second."""
    return max(2, round(rate_per_s / (1 / POLL_S + MIGRATING / PROGRESS_S)))


def _run_queue_wait_s(procs: list[psutil.Process]) -> float:
    """Seconds the threads of `procs` spent runnable but waiting for a core (/proc/PID/task/*/schedstat,
    field 2; zero where the kernel does not keep it)."""
    total = 0
    for proc in procs:
        for stat in Path(f"/proc/{proc.pid}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[1])
            except (OSError, IndexError, ValueError):  # a thread that ended meanwhile
                continue
    return total / 1e9


def _steal_s(cpus: set[int] | None) -> tuple[float, float]:
    """Seconds the hypervisor gave to other guests (/proc/stat's steal column): of `cpus` (all:
    None), and of all cores."""
    ticks = everywhere = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or len(fields) < 8:
            continue
        everywhere += int(fields[7])
        if cpus is None or int(name[3:]) in cpus:
            ticks += int(fields[7])
    tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
    return ticks * tick_s, everywhere * tick_s


class CpuSampler(threading.Thread):
    """Every 0.25 s, until stopped: (epoch, CPU seconds of the server's process tree, seconds its
    threads waited for a core, seconds stolen by the hypervisor from its cores and from all cores).
    The last three are what the MACHINE took: other processes on its core, other guests on the host."""

    def __init__(self, pid: int, cpus: set[int] | None = None) -> None:
        super().__init__(daemon=True)
        root = psutil.Process(pid)
        self.procs = [root, *root.children(recursive=True)]
        self.cpus = cpus
        self.samples: list[tuple[float, ...]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                cpu = sum(p.cpu_times().user + p.cpu_times().system for p in self.procs)
            except psutil.Error:
                break
            self.samples.append((time.time(), cpu, _run_queue_wait_s(self.procs), *_steal_s(self.cpus)))
            self.done.wait(0.25)

    def _delta(self, column: int, t0: float, t1: float) -> float:
        if len(self.samples) < 2:
            return math.nan
        series = np.array(self.samples).T
        return float(np.interp(t1, series[0], series[column]) - np.interp(t0, series[0], series[column]))

    def cpu_s(self, t0: float, t1: float) -> float:
        return self._delta(1, t0, t1)

    def taken_s(self, t0: float, t1: float) -> tuple[float, float, float]:
        """(run-queue wait, steal on the server's cores, steal on all cores) over [t0, t1], in seconds."""
        return self._delta(2, t0, t1), self._delta(3, t0, t1), self._delta(4, t0, t1)


def figures(run: Path, window: tuple[float, float], service_ms: dict[str, float] | None = None) -> dict[str, float]:
    """Throughput, poll and progress p50/p95/p99 (ms), error rate, generator evidence and the
    server's busy fraction by the utilisation law, U = sum of mean service times / span, with
    `service_ms` (endpoint template -> mean ms, from the low-load calibration; Server-Timing
    itself counts the time a handler waits behind the others once the server is busy)."""
    r = load_run(run).requests
    alone = first_in(r)  # over the whole run: what was in flight before the window counts
    inside = ((r["t_start_s"] >= window[0]) & (r["t_start_s"] < window[1])).to_numpy()
    alone, r = alone[inside], r[inside]
    span = window[1] - window[0]
    ok = r[r["ok"]]
    out: dict[str, float] = {
        "throughput": len(ok) / span,
        "offered": len(r) / span,
        "error_rate": float((~r["ok"]).mean()) if len(r) else math.nan,
        "busy": math.nan,
    }
    if service_ms:
        means = ok["endpoint"].astype(object).map(service_ms).fillna(service_ms.get("default", 0.0))  # categorical
        out["busy"] = float(means.sum()) / 1000 / span
    for tag, endpoint in (("poll", POLL), ("progress", PROGRESS)):
        lat = ok.loc[ok["endpoint"] == endpoint, "latency_ms"].to_numpy(dtype=float)
        qs = quantiles(lat, [0.5, 0.95, 0.99]) if len(lat) else [math.nan] * 3
        out.update({f"{tag}_p50": float(qs[0]), f"{tag}_p95": float(qs[1]), f"{tag}_p99": float(qs[2])})
        out[f"{tag}_n"] = float(len(lat))
    # The round trip outside the server (latency - Server-Timing) of requests sent with nothing in
    # flight: no queue in it, so the same at every load; a run where it is longer was slowed by
    # the machine (the client, the kernel), not by the server (`slow_round_trips`).
    bare = (ok["latency_ms"] - ok["server_ms"]).to_numpy(dtype=float, na_value=np.nan)[alone[r["ok"].to_numpy()]]
    bare = bare[np.isfinite(bare)]
    out["rtt_p50"] = float(np.median(bare)) if len(bare) >= MIN_BARE else math.nan
    lag_ms = (r["t_start_s"] - r["t_sched_s"]).to_numpy(dtype=float) * 1000
    out["lag_p95"] = float(quantiles(lag_ms, [0.95])[0]) if len(r) else math.nan
    out["generator_cpu"] = math.nan
    generator = load_generator(run)
    if generator is not None and len(generator):
        steady = generator[(generator["t_s"] >= window[0]) & (generator["t_s"] < window[1])]
        out["generator_cpu"] = float(steady.groupby("process")["cpu_percent"].mean().max())
    return out


@dataclass
class Level:
    """One measured load run and its figures over the steady window."""

    name: str
    scenario: Scenario
    run: Path
    window: tuple[float, float]
    load_avg: tuple[float, float]  # 1-minute load average before and after
    figures: dict[str, float] = field(default_factory=dict)
    pinned: str = ""  # PostgreSQL: which backends were pinned to the server's cores (pgpin), or why not

    def evidence(self, service_ms: dict[str, float]) -> None:
        """The busy fraction, now that the service times are known (from the calibration)."""
        self.figures["busy"] = figures(self.run, self.window, service_ms)["busy"]

    def bottleneck_is_server(self, saturated: bool) -> list[str]:
        """What speaks against the server being the bottleneck (empty: the evidence holds)."""
        f, problems = self.figures, []
        # Saturated, the server's core is serving or taken by the hypervisor (steal): both count.
        stolen = f.get("steal_ms_s", math.nan) / 1000
        stolen = stolen if math.isfinite(stolen) else 0.0
        if saturated and not f["busy"] + stolen >= 0.85:
            problems.append(f"server busy {f['busy']:.0%} + {stolen:.0%} stolen (< 85%) at saturation")
        if not f["generator_cpu"] < 50:
            problems.append(f"generator CPU {f['generator_cpu']:.0f}% of its core (>= 50%)")
        if not f["lag_p95"] < 5:
            problems.append(f"generator lag p95 {f['lag_p95']:.1f} ms (>= 5 ms)")
        if self.pinned.startswith("NOT"):
            problems.append(f"PostgreSQL backends {self.pinned}")
        return problems


def measure(
    tmp: Path,
    scenario: Scenario,
    *,
    db: str | None = None,
    server_args: tuple[str, ...] = DEFAULT_SERVER_ARGS,
    generator_cpus: str | None = GENERATOR_CPUS,
    warmup: float | None = None,
) -> Level:
    """Run `scenario` with `smsload load` against a fresh, limited reference server; stop it by PID.

    A level already measured in `tmp` (its run and `level.json`) is read back, not run again:
    delete its directory to measure it again (a level whose evidence failed). Its figures are over
    `warmup` (default: `warmup_s`, after the arrival and the task wave) to the end."""
    path, out = tmp / f"{scenario.name}.yaml", tmp / scenario.name
    window = (warmup_s(scenario) if warmup is None else warmup, scenario.duration_s)
    saved = out / "level.json"
    if saved.exists():
        kept = json.loads(saved.read_text())
        measured = load_scenario(path)  # as it was measured: a new probe may have moved the level since
        if measured.to_dict() != scenario.to_dict():
            print(f"{scenario.name}: kept as measured ({measured.fleet.agents} agents, not {scenario.fleet.agents})")
        window = (warmup_s(measured) if warmup is None else warmup, measured.duration_s)
        level = Level(scenario.name, measured, out, window, tuple(kept["load_avg"]))  # type: ignore[arg-type]
        level.figures = figures(out, window)
        for key in ("server_cpu", *TAKEN):
            level.figures[key] = kept.get(key, math.nan)
        level.pinned = kept.get("pinned", "")
        return level
    path.write_text(yaml.safe_dump(scenario.to_dict(), sort_keys=False))
    before = os.getloadavg()[0]
    store = db or f"sqlite:///{tmp / scenario.name}.sqlite3"
    name, cpus = application_name(store), cpus_of(server_args)
    pinner = BackendPinner(store.split("?")[0], name, cpus) if name and cpus and store.startswith("postgres") else None
    with run_server(store, [TOKEN], tmp / f"{scenario.name}-server.log", extra=server_args) as srv:
        sampler = CpuSampler(srv.pid, cpus)
        sampler.start()
        if pinner is not None:
            pinner.start()
        cmd = [sys.executable, "-m", "sim.cli", "load", str(path), "--host", srv.base_url, "--out", str(out)]
        cmd += ["--quiet"] + (["--generator-cpus", generator_cpus] if generator_cpus else [])
        load = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SMS_AUTH_TOKEN": TOKEN},
            cwd=ROOT,
        )
        try:
            _, stderr = load.communicate(timeout=scenario.duration_s + 180)
        except BaseException:  # Ctrl-C or a hang: smsload load stops Locust itself on SIGINT
            load.send_signal(signal.SIGINT)
            try:
                load.wait(60)
            except subprocess.TimeoutExpired:
                load.kill()
            raise
        sampler.done.set()
        sampler.join()
        pinned = pinner.stop() if pinner is not None else ""
    if load.returncode not in (0, 1):  # 1: Locust saw failed requests (overload), which the run shows
        raise RuntimeError(f"smsload load failed for {scenario.name}: {stderr.strip()[-2000:]}")
    t0 = float(json.loads((out / "manifest.json").read_text())["t0_epoch"])
    level = Level(scenario.name, scenario, out, window, (before, os.getloadavg()[0]))
    level.figures = figures(out, window)
    span = window[1] - window[0]
    level.figures["server_cpu"] = sampler.cpu_s(t0 + window[0], t0 + window[1]) / span
    for key, taken in zip(TAKEN, sampler.taken_s(t0 + window[0], t0 + window[1])):
        level.figures[key] = taken / span * 1000
    level.pinned = pinned
    kept = ("server_cpu", *TAKEN)
    saved.write_text(json.dumps({"load_avg": level.load_avg, "pinned": pinned, **{k: level.figures[k] for k in kept}}))
    return level


MIN_BARE = 100  # requests sent with nothing in flight, for a round trip's median (few at saturation)
# A run whose round trip p50 is this many times the runs' median was slowed by the machine. Among
# 24 runs of two stores the others were within 1.12x of their store's median; two slowed runs
# (their p50 15-25% over their repeats') had 1.7x and 1.29x.
SLOW_RTT = 1.25


def slow_round_trips(levels: list[Level]) -> list[tuple[Level, str]]:
    """The runs whose round trip outside the server (`rtt_p50`, requests sent with nothing in
    flight) is SLOW_RTT times the median of all of them or more: the client or the kernel was
    slower while they ran (on one SQLite 50% run, 1.19 ms against 0.62-0.78 for the 11 others: its
    poll p50 came out 25% over its repeats', and with it in the calibration the 90% poll p50 was
    predicted 4 points higher). The load average, steal and generator lag did not show it."""
    known = [lv.figures.get("rtt_p50", math.nan) for lv in levels]
    finite = [x for x in known if math.isfinite(x)]
    if len(finite) < 3:
        return []
    median = float(np.median(finite))
    return [
        (lv, f"round trip p50 {x:.2f} ms, {x / median:.1f}x the runs' median {median:.2f} ms")
        for lv, x in zip(levels, known)
        if math.isfinite(x) and x >= SLOW_RTT * median
    ]


def forget(tmp: Path, level: Level) -> None:
    """Delete a measured level's run and SQLite store, so that `measure` runs it again."""
    shutil.rmtree(level.run)
    for old in tmp.glob(f"{level.name}.sqlite3*"):
        old.unlink()


# What the machine took, per second of the window (ms/s): the server's run-queue wait, the steal on
# its cores, the steal on all cores (the generator's too; summed over cores).
TAKEN = ("server_wait_ms_s", "steal_ms_s", "steal_all_ms_s")
STOLEN_MS_S = 10.0  # the hypervisor gave the server's cores to other guests 1% of the time or more


def steal_limit(load: float) -> float:
    """The steal (ms/s) that disturbs a level offering `load` x capacity: STOLEN_MS_S at half load or
    less and at saturation; in between it shrinks with 1 - load, since the queue a stall leaves
    takes 1 / (1 - rho) times the stall to drain (at 90% a 20 ms stall lifts ~40 requests)."""
    return STOLEN_MS_S if load >= 1.0 else STOLEN_MS_S * max(0.2, min(1.0, 2.0 * (1.0 - load)))


def machine_signs(level: Level, busy_load: float | None = None, stolen_ms_s: float = STOLEN_MS_S) -> list[str]:
    """The machine's own signs of having disturbed this level, apart from the rig's figures: the
    hypervisor stealing the server's core (`stolen_ms_s`: see `steal_limit`) or twice STOLEN_MS_S
    over all cores (the generator's too), or, with `busy_load`, a 1-minute load average at or
    above it before or after. (The server's own run-queue wait is recorded, not judged: its
    threads, and on PostgreSQL the pinned backend, share its core, so it is never near zero.)"""
    f, reasons = level.figures, []
    if f.get("steal_ms_s", 0.0) >= stolen_ms_s:
        stolen = f"{f['steal_ms_s']:.1f} ms/s stolen from the server's core by the hypervisor"
        reasons.append(f"{stolen} (>= {stolen_ms_s:g})")
    if f.get("steal_all_ms_s", 0.0) >= 2 * STOLEN_MS_S:
        stolen = f"{f['steal_all_ms_s']:.1f} ms/s stolen from all cores by the hypervisor"
        reasons.append(f"{stolen} (>= {2 * STOLEN_MS_S:g})")
    if busy_load is not None and max(level.load_avg) >= busy_load:
        reasons.append(f"load average {max(level.load_avg):.1f} (>= {busy_load:g}: other users of the machine)")
    return reasons


def machine_busy(level: Level, busy_load: float | None = None, stolen_ms_s: float = STOLEN_MS_S) -> list[str]:
    """What says the MACHINE, not the rig, disturbed this level: the generator behind its schedule
    or short of CPU (other users on its core), or `machine_signs`. Empty: nothing; a level with
    reasons is worth measuring again."""
    if not level.figures:
        return ["no figures"]
    generator = [p for p in level.bottleneck_is_server(saturated=False) if p.startswith("generator")]
    return generator + machine_signs(level, busy_load, stolen_ms_s)


def measure_clean(
    tmp: Path,
    scenario: Scenario,
    *,
    attempts: int = 3,
    busy_load: float | None = None,
    stolen_ms_s: float = STOLEN_MS_S,
    settle_s: float = 60.0,
    fresh_db: Callable[[], str | None] = lambda: None,
    **kw: Any,
) -> tuple[Level, list[str]]:
    """`measure`, again (up to `attempts` in all) while `machine_busy` says the machine disturbed it:
    before each new attempt the level's run and store are deleted (`fresh_db()`: a new store URL per
    attempt, None for SQLite in `tmp`) and the load average is waited for (up to `settle_s`) to come
    under `busy_load` (or half the cores). Returns the last level and, per attempt given up on, why
    (for the evidence; the caller judges the last level as usual)."""
    given_up: list[str] = []
    limit = busy_load if busy_load is not None else float(os.cpu_count() or 1) / 2
    for attempt in range(attempts):
        level = measure(tmp, scenario, db=fresh_db(), **kw)
        reasons = machine_busy(level, busy_load, stolen_ms_s)
        if not reasons or attempt == attempts - 1:
            return level, given_up
        given_up.append(f"attempt {attempt + 1}: " + "; ".join(reasons))
        forget(tmp, level)
        deadline = time.monotonic() + settle_s
        while os.getloadavg()[0] >= limit and time.monotonic() < deadline:
            time.sleep(2)
    raise AssertionError("unreachable")  # attempts >= 1 returns in the loop


def service_means(calibrated: Scenario) -> dict[str, float]:
    """Endpoint template -> mean service time (ms) of the calibrated server, `default` for the rest."""
    from sim.model.intents import ENDPOINTS

    server = calibrated.server
    out = {template: server.service_ms_for(name).mean for name, (_, template) in ENDPOINTS.items()}
    return {**out, "default": server.service_ms["default"].mean}


def simulate_runs(
    tmp: Path, level: Level, calibrated: Scenario | list[Scenario], replications: int = 5
) -> list[dict[str, float]]:
    """The level's scenario with the calibrated server, `replications` seeds per calibration (one
    scenario or several, e.g. one per repeat of the low level): each run's figures."""
    calibrations = calibrated if isinstance(calibrated, list) else [calibrated]
    for old in tmp.glob(f"{level.name}-sim-*"):  # predictions of an earlier calibration
        shutil.rmtree(old)
    runs = []
    for c, cal in enumerate(calibrations):
        server, means = cal.server.model_dump(mode="json"), service_means(cal)
        tag = f"c{c}-" if len(calibrations) > 1 else ""
        for k in range(replications):
            scenario = level.scenario.with_overrides(seed=level.scenario.seed + 1000 * k, fields={"server": server})
            run = run_des(scenario, tmp / f"{level.name}-sim-{tag}{k}")
            runs.append(figures(run, level.window, means))
    return runs


def summarise(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The mean of each figure over simulated runs and its 95% interval (Student t)."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = np.array([r[key] for r in runs], dtype=float)
        if np.isnan(values).all():  # a load test's own figures (generator CPU): none in a simulation
            continue
        mean = float(np.nanmean(values))
        half = float(stats.t.ppf(0.975, len(values) - 1) * np.nanstd(values, ddof=1) / math.sqrt(len(values)))
        out[key], out[f"{key}_lo"], out[f"{key}_hi"] = mean, mean - half, mean + half
    return out


def simulate(tmp: Path, level: Level, calibrated: Scenario | list[Scenario], replications: int = 5) -> dict[str, Any]:
    """`simulate_runs`, summarised: the mean of each figure and its 95% interval over all the runs."""
    return summarise(simulate_runs(tmp, level, calibrated, replications))
