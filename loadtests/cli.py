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
    p.add_argument(
        "--admin-token",
        help="with --host and a scenario with faults: the server's fault admin token (smsload serve --admin-token; "
        "default $SMSLOAD_ADMIN_TOKEN); the embedded server gets one of its own. Never written anywhere",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines and no summary table")
    rig = p.add_argument_group(
        "knee rig", "limits for the embedded server (see `smsload serve --help`) and the generator's cores"
    )
    rig.add_argument(
        "--server-store-latency-ms", metavar="SPEC", help="e.g. lognormal:2,0.3 (ms per store transaction)"
    )
    rig.add_argument("--server-cpus", metavar="LIST", help="the embedded server's cores (e.g. 1)")
    rig.add_argument("--server-cpu-quota", metavar="FRACTION", help="the embedded server's share of one core")
    rig.add_argument("--generator-cpus", metavar="LIST", help="Locust's cores (e.g. 0): this process and its children")
    p.set_defaults(func=_main)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pin_generator(spec: str) -> None:
    """This process on the cores `spec` names; Locust, started after, inherits them."""
    try:
        cpus = {int(c) for c in spec.split(",")}
        os.sched_setaffinity(0, cpus)
    except (ValueError, OSError, AttributeError) as exc:
        raise UsageError(
            f"--generator-cpus: expected cores of this machine such as 0 or 0,1, got {spec!r} ({exc})"
        ) from None


def _main(args: argparse.Namespace) -> int:
    from loadtests.run import LoadError, LoadFailed, LoadOptions, run_load  # pandas, httpx: not for --help
    from loadtests.rundir import default_out

    scenario = scenario_from_args(args.scenario, agents=args.agents, duration_s=args.duration_s)
    out = args.out or default_out(scenario)
    server_args: list[str] = []
    for flag, value in (
        ("--store-latency-ms", args.server_store_latency_ms),
        ("--cpus", args.server_cpus),
        ("--cpu-quota", args.server_cpu_quota),
    ):
        server_args += [flag, value] if value else []
    if args.generator_cpus:
        _pin_generator(args.generator_cpus)
    options = LoadOptions(
        host=args.host,
        token=args.token or os.environ.get(TOKEN_ENV, ""),
        admin_token=args.admin_token or os.environ.get("SMSLOAD_ADMIN_TOKEN", ""),  # sim.server.admin
        workers=args.workers,
        quiet=args.quiet,
        server_args=tuple(server_args),
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
    from rich.console import Console

    from sim.report.gate import gate_after_run

    # The run itself failed (an objective of the scenario's slo: violated, the generator saturated):
    # exit 1, so that a CI job running `smsload load` fails without a separate `smsload check`.
    return 0 if gate_after_run(out, Console(stderr=True)) else 1
