"""`smsload sim`: run the simulation of a scenario and print where its run directory is.

Two engines read the same scenario and write the same run directory: `simpy` (sim.des: the
whole lifecycle, a row per request) and `fast` (sim.fast: the polling plane compiled with
numba, for fleets of 10^5..10^6, latency histograms instead of rows). `auto` picks `fast`
for a scenario of at least FAST_FROM_AGENTS agents that it models whole (no operator work, no
fault but outages: `sim.fast.scope.not_modelled`), else `simpy`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sim.cli_support import (
    SCENARIO_HELP,
    LazyProgress,
    UsageError,
    add_command,
    print_run_summary,
    refuse_existing_run,
    scenario_from_args,
)

FAST_FROM_AGENTS = 10_000  # below this a row per request is cheap, and SimPy models everything
ENGINES = ("auto", "simpy", "fast")


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "sim",
        help="simulate a scenario (SimPy, or the compiled engine at fleet scale) and write a run directory",
        description="Run the discrete-event simulation of SCENARIO: agents and the operator against a "
        "queueing model of the server, in virtual time. Writes a run directory (manifest.json, "
        "requests.parquet, tasks.parquet, commands.parquet, summary.json; the fast engine writes "
        "latency_hist.parquet instead of request rows) and prints a summary.\n\n"
        "At the end the scenario's `slo:` is checked and its pass/fail table printed (as `smsload check RUN`). "
        "Exit 0: the run finished and met every objective; 1: an objective violated or not measured (the run "
        "directory is complete all the same); 2: bad input; 130: interrupted.",
        examples=[
            "smsload sim quickstart --out runs/q                  # seconds",
            "smsload sim capacity-baseline --agents 1000000 --engine fast   # the polling plane of 10^6 agents",
        ],
    )
    p.add_argument("scenario", metavar="SCENARIO", help=SCENARIO_HELP)
    p.add_argument("--out", type=Path, help="run directory to write (default: runs/NAME-des-TIMESTAMP)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--duration-s", type=float, help="override duration_s (virtual seconds)")
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="simpy: the whole lifecycle, a row per request; fast: the polling plane only (registration, "
        "polls, retries, outages), compiled, latency histograms instead of rows, for 10^5..10^6 agents; "
        f"auto (default): fast for at least {FAST_FROM_AGENTS:,} agents when it models the scenario whole "
        "(no operator work, no faults but outages), else simpy",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=_main)


def pick_engine(engine: str, scenario: Any) -> str:
    """The engine `auto` stands for, for this scenario (see the module docstring)."""
    if engine != "auto":
        return engine
    from sim.fast.scope import not_modelled

    fast = scenario.fleet.agents >= FAST_FROM_AGENTS and not not_modelled(scenario)
    return "fast" if fast else "simpy"


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sim.records import default_out

    scenario = scenario_from_args(args.scenario, agents=args.agents, duration_s=args.duration_s, seed=args.seed)
    engine = pick_engine(args.engine, scenario)
    console = Console(stderr=True)
    if engine == "fast":
        try:
            from sim.fast.run import EXECUTOR
            from sim.fast.run import run_fast as run
            from sim.fast.scope import not_modelled
        except ImportError as exc:  # numba missing or broken
            raise UsageError(f"the fast engine is not available here: {exc}") from None
        for line in not_modelled(scenario):
            console.print(f"[yellow]not modelled:[/] {line}")
    else:
        from sim.des.run import EXECUTOR  # SimPy and pyarrow: not for `smsload --help`
        from sim.des.run import run_des as run
    out = args.out or default_out(scenario, EXECUTOR)
    refuse_existing_run(out)
    bar = None if args.quiet else LazyProgress(console, f"simulating {scenario.name} ({engine})")
    try:
        run(scenario, out, progress=bar)
    except KeyboardInterrupt:
        console.print(f"interrupted: {out} holds the run so far, marked incomplete")
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(out)
    if not args.quiet:
        print_run_summary(out)
    from sim.report.gate import gate_after_run

    # The run succeeded (its directory is complete); only the gate can fail it, as in `smsload load`,
    # so that a CI job running `smsload sim` fails without a separate `smsload check`.
    return 0 if gate_after_run(out, console) else 1
