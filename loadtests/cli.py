"""`smsload load`: run the agent fleet of a scenario as a Locust load test and write its run directory.

A thin layer over `loadtests.run.run_load`: arguments -> scenario and `LoadOptions` -> the
run -> its path and summary. The token comes from --token or $SMS_AUTH_TOKEN and is handed
to `run_load` as an argument.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sim.cli_support import SCENARIO_HELP, UsageError, print_run_summary, scenario_from_args

TOKEN_ENV = "SMS_AUTH_TOKEN"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "load",
        help="load-test a server with the scenario's agent fleet (Locust) and write a run directory",
        description="Run SCENARIO's agents and operator as Locust users over real HTTP, against the reference "
        "server started for the run or against --host. Writes a run directory with the simulation's "
        "schema (manifest.json, requests.parquet, tasks.parquet, commands.parquet, summary.json) "
        "plus generator.parquet, and prints a summary.",
    )
    p.add_argument("scenario", help=SCENARIO_HELP)
    p.add_argument("--host", help="base URL of the server to load (default: start the reference server on loopback)")
    p.add_argument("--out", type=Path, help="run directory to write (default: runs/NAME-locust-TIMESTAMP)")
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (default 0: one process)")
    p.add_argument("--duration-s", type=float, help="override duration_s (wall-clock seconds)")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--token", help=f"X-Auth-Token for --host (default ${TOKEN_ENV}); never written anywhere")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no summary table")
    p.set_defaults(func=_main)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _main(args: argparse.Namespace) -> int:
    from loadtests.run import LoadError, LoadFailed, LoadOptions, run_load  # pandas, httpx: not for --help
    from loadtests.rundir import default_out

    scenario = scenario_from_args(args.scenario, agents=args.agents, duration_s=args.duration_s)
    out = args.out or default_out(scenario)
    options = LoadOptions(
        host=args.host, token=args.token or os.environ.get(TOKEN_ENV, ""), workers=args.workers, quiet=args.quiet
    )
    try:
        run_load(scenario, out, options, progress=_say)
    except LoadError as exc:
        raise UsageError(str(exc)) from None
    except LoadFailed as exc:
        _say(f"smsload load: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say(f"interrupted: {out} holds the run so far, marked incomplete")
        return 130
    print(out)
    if not args.quiet:
        print_run_summary(out)
    return 0
