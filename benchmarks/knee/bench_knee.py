"""Fidelity at the knee: the calibrated simulation against a server that saturates, not its generator.

    .venv/bin/python benchmarks/knee/bench_knee.py [--store sqlite|postgres] [--rig latency|quota]
        [--seconds 60] [--levels 0.5,0.8,0.9,1.0,1.2] [--replications 5]

1. **Probe**: a fleet arriving over most of `--probe-seconds` until it offers about twice the
   rig's nominal capacity; the plateau of its completions is the measured capacity X
   (`sim.report.calibrate_probe`).
2. **Levels**: paced fleets (`rig.fleet`: polls every second, a tenth migrating with a
   progress write every second) offering each fraction of X, arriving evenly over
   `--arrival-seconds` (the liveness coalescing window, 30 s: so that the recorded visits, at
   most one per source per 30 s, are spread as a real fleet's are, not one synchronized burst
   every 30 s), then measured for `--seconds` against a fresh limited server (`rig.measure`;
   SQLite in a temp dir, or PostgreSQL in a fresh schema of
   postgresql://postgres@127.0.0.1:5432/test, dropped afterwards).
3. **Calibration**: `smsload calibrate`'s `calibrate` from the LOWEST level plus the probe.
4. **Prediction**: each level's scenario with the calibrated server, `--replications` seeded
   DES runs; mean and 95% interval (t) per figure, over the same steady window.
5. **Table** (markdown, for benchmarks/RESULTS.md): measured vs predicted throughput, poll
   and progress p50/p95/p99, error rate, and the evidence columns (server busy = X * S,
   server CPU, generator CPU of its core, generator lag p95, what the machine took from the
   server: ms per second its threads waited for a core and the hypervisor stole from its cores,
   load average). A level whose evidence fails is marked; rerun it on a quieter machine.

The rigs (see `rig.py` and README "The knee rig"): `latency` = `--store-latency-ms
lognormal:4,0.3 --cpus 1` (an M/G/1 queue, ~220 requests/s); `quota` = `--cpu-quota 0.1
--cpus 1` (a tenth of core 1 per 1 ms period). Locust runs on core 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rig  # noqa: E402

from sim.records import load_run  # noqa: E402
from sim.report.calibrate import calibrate  # noqa: E402
from sim.report.calibrate_probe import fit_capacity  # noqa: E402

RIGS = {
    "latency": (("--store-latency-ms", "lognormal:4,0.3", "--cpus", "1"), 1000 / (4 * math.exp(0.3**2 / 2) + 0.3)),
    "quota": (("--cpu-quota", "0.1", "--cpus", "1"), 250.0),
}
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
COLUMNS = ("throughput", "poll_p50", "poll_p95", "poll_p99", "progress_p50", "progress_p95", "progress_p99")


@contextlib.contextmanager
def store_url(kind: str, tmp: Path) -> Iterator[str | None]:
    """None (SQLite per level, in `tmp`) or a PostgreSQL URL whose search_path is a fresh schema."""
    if kind == "sqlite":
        yield None
        return
    import psycopg

    schema = f"knee_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            # Named, so that the rig finds their backends and pins them to the server's cores (pgpin).
            yield f"{PG_URL}?options=-csearch_path%3D{schema}&application_name={schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def probe_capacity(tmp: Path, guess: float, seconds: float, **kw: Any) -> tuple[rig.Level, list[str]]:
    """The probe, measured again while the machine disturbs it; once kept, never again: the levels
    were set from its capacity.

    Its fleet (twice `guess`) arrives over 70% of it, and the operator starts the migrations at a
    fifth of that arrival, while the server still has room (a fifth of the fleet is there, twice
    the sources needed): the saturated bins then hold the levels' share of progress writes. With
    the wave at the end of the arrival, a server at twice its capacity let through almost none of
    the operator's requests, the probe held 0.5% progress writes against the levels' 9%, and the
    levels saturated 2 to 5% under its capacity: a progress write costs the server more than its
    Server-Timing says (reading its body, and handing it to the event loop twice)."""
    ramp_s = 0.7 * seconds
    scenario = rig.fleet("probe", rig.agents_for(2.0 * guess), seconds, ramp_s=ramp_s, wave_at_s=0.2 * ramp_s)
    if (tmp / "probe" / "level.json").exists():
        return rig.measure(tmp, scenario, server_args=kw["server_args"], warmup=rig.WARMUP_S), []
    return rig.measure_clean(tmp, scenario, warmup=rig.WARMUP_S, **kw)


def capacity_of(level: rig.Level) -> float:
    r = load_run(level.run).requests
    r = r[r["ok"]]
    t_end = r["t_start_s"].to_numpy(dtype=float) + r["latency_ms"].to_numpy(dtype=float) / 1000
    return fit_capacity(t_end, np.ones(len(t_end))).throughput_per_s


def fmt(measured: float, predicted: dict[str, float], key: str) -> str:
    p, lo, hi = predicted[key], predicted[f"{key}_lo"], predicted[f"{key}_hi"]
    err = p / measured - 1 if measured else math.nan
    digits = 0 if key == "throughput" else 1
    return f"{measured:.{digits}f} / {p:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}] ({err:+.0%})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    p.add_argument("--rig", choices=tuple(RIGS), default="latency")
    p.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="each level's measured window after its arrival and 6 s (default 60)",
    )
    p.add_argument(
        "--arrival-seconds",
        type=float,
        default=30.0,
        help="each level's fleet arrives evenly over this long before the measured --seconds (default 30: "
        "the server's liveness coalescing window, which spreads the recorded visits)",
    )
    p.add_argument(
        "--probe-seconds",
        type=float,
        default=40.0,
        help="the capacity probe's length; its fleet (twice the rig's nominal capacity) arrives over 70%% of it",
    )
    p.add_argument("--levels", default="0.5,0.8,0.9,1.0,1.2")
    p.add_argument("--replications", type=int, default=5)
    p.add_argument("--json", type=Path, help="write every figure here too")
    p.add_argument("--attempts", type=int, default=3, help="measure a level again while the machine disturbed it")
    p.add_argument(
        "--busy-load", type=float, default=2.0, help="a 1-minute load average this high disturbs a level (default 2)"
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep the runs here, and reuse the levels already there (default: a temporary directory)",
    )
    args = p.parse_args(argv)
    if args.attempts < 1:
        p.error(f"--attempts: expected 1 or more, got {args.attempts}")
    if not args.arrival_seconds > 0 or not args.seconds > 0:
        p.error(f"--arrival-seconds and --seconds: expected > 0, got {args.arrival_seconds:g} and {args.seconds:g}")
    levels = [float(x) for x in args.levels.split(",")]
    server_args, guess = RIGS[args.rig]
    started = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    with contextlib.ExitStack() as stack:
        if args.workdir:
            args.workdir.mkdir(parents=True, exist_ok=True)  # levels measured there before are reused
            tmp = args.workdir
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="knee-")))

        def db() -> str | None:
            """A fresh store per run: the operator picks its sources from a listing, which must
            not show another run's (dead) agents."""
            return stack.enter_context(store_url(args.store, tmp))

        clean: dict[str, Any] = {
            "fresh_db": db,
            "server_args": server_args,
            "attempts": args.attempts,
            "busy_load": args.busy_load,
        }
        probe, retried = probe_capacity(tmp, guess, args.probe_seconds, **clean)
        retried = [f"probe {why}" for why in retried]
        capacity = capacity_of(probe)
        print(f"capacity {capacity:.1f} requests/s (probe, load avg {probe.load_avg[0]:.1f})", flush=True)
        measured = []
        for f in levels:
            duration = args.arrival_seconds + rig.SETTLE_S + args.seconds
            agents = rig.agents_for(f * capacity)
            scenario = rig.fleet(f"level-{round(f * 100)}", agents, duration, ramp_s=args.arrival_seconds)
            level, again = rig.measure_clean(tmp, scenario, stolen_ms_s=rig.steal_limit(f), **clean)
            retried += [f"{f:.0%} {why}" for why in again]
            print(f"  {f:.0%}: {level.figures['throughput']:.1f}/s, load avg {level.load_avg[1]:.1f}", flush=True)
            measured.append(level)
        # The probe's capacity over all its saturated bins (after Locust's start). Its bins while
        # the fleet still arrived complete more (fewer agents migrating: fewer progress writes),
        # which the service fitted per endpoint accounts for: X * S came to 0.99-1.00 over the
        # whole probe on three runs, and to 0.96-1.00 over the 11 bins after its arrival alone.
        probe_after = rig.WARMUP_S
        cal = calibrate(
            measured[0].run, probe=probe.run, after_s=rig.warmup_s(measured[0].scenario), probe_after_s=probe_after
        )
        means = rig.service_means(cal.scenario)
        rows, dump = [], []
        for f, level in zip(levels, measured):
            level.evidence(means)
            predicted = rig.simulate(tmp, level, cal.scenario, args.replications)
            m = level.figures
            problems = level.bottleneck_is_server(saturated=f >= 1.0)
            rows.append(
                [f"{f:.0%}", str(level.scenario.fleet.agents)]
                + [fmt(m[k], predicted, k) for k in COLUMNS]
                + [
                    f"{m['error_rate']:.1%} / {predicted['error_rate']:.1%}",
                    f"{m['busy']:.2f}",
                    f"{m['server_cpu']:.0%}",
                    f"{m['generator_cpu']:.0f}%",
                    f"{m['lag_p95']:.1f}",
                    f"{m['server_wait_ms_s']:.1f} / {m['steal_ms_s']:.1f}",
                    f"{level.load_avg[0]:.1f}-{level.load_avg[1]:.1f}",
                    *([level.pinned] if args.store == "postgres" else []),
                    "ok" if not problems else "NOT: " + "; ".join(problems),
                ]
            )
            dump.append({"level": f, "agents": level.scenario.fleet.agents, "measured": m, "predicted": predicted})
    head = ["load", "agents", *(f"{c} meas / pred [95%] (err)" for c in COLUMNS)]
    head += ["errors meas / pred", "busy", "server CPU", "gen CPU", "lag p95 ms", "server waited / stolen ms/s"]
    head += ["load avg"]
    head += [*(["PG backends"] if args.store == "postgres" else []), "server bottleneck"]
    print()
    print(f"{args.store}, rig {args.rig} ({' '.join(server_args)}), {started}, capacity {capacity:.1f}/s, ")
    print(f"calibrated: workers {cal.workers} ({cal.workers_source}); utilisation {cal.utilisation:.2f}")
    for note in cal.notes:
        print(f"note: {note}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for why in retried:
        print(f"measured again: {why}")
    if args.json:
        args.json.write_text(json.dumps({"capacity": capacity, "levels": dump}, indent=1, default=float))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
