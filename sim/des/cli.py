"""`smsload sim`: run the simulation of a scenario and print where its run directory is."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from sim.cli_support import (
    SCENARIO_HELP,
    LazyProgress,
    add_command,
    print_run_summary,
    refuse_existing_run,
    scenario_from_args,
)


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "sim",
        help="simulate a scenario (SimPy) and write a run directory",
        description="Run the discrete-event simulation of SCENARIO: agents and the operator against a "
        "queueing model of the server, in virtual time. Writes a run directory (manifest.json, "
        "requests.parquet, tasks.parquet, commands.parquet, summary.json) and prints a summary.",
        examples=[
            "smsload sim quickstart --out runs/q                  # seconds",
            "smsload sim capacity-baseline --agents 20000 --seed 3 --duration-s 1800",
        ],
    )
    p.add_argument("scenario", metavar="SCENARIO", help=SCENARIO_HELP)
    p.add_argument("--out", type=Path, help="run directory to write (default: runs/NAME-des-TIMESTAMP)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--duration-s", type=float, help="override duration_s (virtual seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from sim.des.run import run_des  # SimPy and pyarrow: not for `smsload --help`
    from sim.records import default_out

    scenario = scenario_from_args(args.scenario, agents=args.agents, duration_s=args.duration_s, seed=args.seed)
    out = args.out or default_out(scenario, "des")
    refuse_existing_run(out)
    console = Console(stderr=True)
    bar = None if args.quiet else LazyProgress(console, f"simulating {scenario.name}")
    try:
        run_des(scenario, out, progress=bar)
    except KeyboardInterrupt:
        console.print(f"interrupted: {out} holds the run so far, marked incomplete")
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(out)
    if not args.quiet:
        print_run_summary(out)
    return 0
