"""`smsload sweep`: run a scenario over a grid of fleet sizes and server configurations, then the capacity table."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sim.cli_support import SCENARIO_HELP, UsageError, add_command, check_positive, scenario_from_args


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "sweep",
        help="run a scenario over a grid (fleet size x configuration x replications); print the capacity table",
        description="Simulate SCENARIO at every combination of the --vary values, each replication with seed "
        "scenario seed + r, on local processes or a Dask cluster. Each point's run directory goes to "
        "OUT/points/KEY/, its summary row to OUT/sweep.parquet; sweep.json records the scenario, grid, "
        "engine and SLO. At the end prints the capacity table (smsload capacity OUT).\n\n"
        "A re-run with the same --out and grid skips the points already done (Ctrl-C keeps them). "
        "The compiled engine (fast, the default) simulates the polling plane only; --engine simpy "
        "simulates the whole lifecycle, much more slowly.",
        examples=[
            "smsload sweep capacity-baseline --vary agents=1e4:1e6:log8 --vary poll_interval_s=10,30,60 "
            "--vary server.workers=1,2,4 --replications 3 --out runs/sweep",
            "smsload sweep quickstart --vary agents=100:10000:log5 --dask tcp://scheduler:8786 --out /shared/sweep",
        ],
    )
    p.add_argument("scenario", metavar="SCENARIO", help=SCENARIO_HELP)
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="PATH=SPEC",
        help="a field and its values: PATH=v1,v2,... or PATH=lo:hi:logN or lo:hi:linN (N points); PATH is a "
        "dotted scenario path (server.workers) or agents, poll_interval_s, workers; repeatable",
    )
    p.add_argument("--replications", type=int, default=1, help="runs per point, seeds seed..seed+R-1 (default 1)")
    p.add_argument(
        "--engine",
        default="fast",
        help="fast (default: the compiled polling engine, sim.fast) or simpy (the whole lifecycle, slower)",
    )
    p.add_argument("--jobs", type=int, help="local worker processes (default: the CPU count)")
    p.add_argument("--dask", metavar="ADDRESS", help="run the points on this Dask scheduler (tcp://HOST:8786)")
    p.add_argument("--out", type=Path, help="sweep directory (default: runs/NAME-sweep)")
    p.add_argument("--slo", action="append", default=[], metavar="EXPR", help="objective, e.g. 'p99 of poll < 200 ms'")
    p.add_argument("--duration-s", type=float, help="override every point's duration_s (virtual seconds)")
    p.add_argument("--max-points", type=int, help="run at most this many new points, then stop (resume later)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no tables")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sim.slo import SloError, parse_slo
    from sim.sweep.engines import EngineError, load_engine
    from sim.sweep.grid import GridError, parse_vary
    from sim.sweep.runner import SweepError, SweepSpec, run_sweep

    check_positive(duration_s=args.duration_s, jobs=args.jobs, max_points=args.max_points)
    if not args.vary:
        raise UsageError("give at least one --vary PATH=SPEC (e.g. --vary agents=1e3:1e5:log5)")
    scenario = scenario_from_args(args.scenario)
    try:
        slo = tuple(args.slo) or scenario.slo
        for text in slo:
            parse_slo(text)
        varies = tuple(parse_vary(v, scenario) for v in args.vary)
        spec = SweepSpec(scenario, varies, args.replications, args.engine, args.duration_s, tuple(slo))
        load_engine(args.engine)
    except SloError as exc:
        raise UsageError(f"--slo: {exc}") from None
    except (GridError, EngineError) as exc:
        raise UsageError(str(exc)) from None
    out = args.out or Path("runs") / f"{scenario.name}-sweep"
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("sweep {task.fields[last]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=args.quiet,
    )
    task = bar.add_task("points", total=len(spec.points), last="")

    def progress(done: int, total: int, key: str) -> None:
        bar.update(task, completed=done, total=total, last=key)

    try:
        with bar:
            rows = run_sweep(
                spec,
                out,
                jobs=args.jobs or os.cpu_count(),
                dask=args.dask,
                max_points=args.max_points,
                progress=progress,
            )
    except KeyboardInterrupt:
        console.print(f"interrupted: {out / 'sweep.parquet'} keeps the finished points; run again to resume")
        return 130
    except SweepError as exc:
        raise UsageError(str(exc)) from None
    left = len(spec.points) - len(set(rows["key"]) & {p.key for p in spec.points})
    console.print(f"{out}: {len(rows)} points done" + (f", {left} left (run again to resume)" if left else ""))
    print(out)
    if not args.quiet and len(rows):
        from sim.report.capacity_cli import write_capacity

        write_capacity(out, list(slo), Console(width=max(Console().width, 140)))
    return 0
