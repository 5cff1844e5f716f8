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

from sim.cli_support import SCENARIO_HELP, UsageError, add_command, print_run_summary, scenario_from_args

TOKEN_ENV = "SMS_AUTH_TOKEN"
AK_SK_ENV = "SMS_AK_SK"


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "load",
        help="load-test a server with the scenario's agent fleet (Locust) and write a run directory",
        description="Run SCENARIO's agents and operator as Locust users over real HTTP, against the reference "
        "server started for the run or against --host. Writes a run directory with the simulation's "
        "schema (manifest.json, requests.parquet, tasks.parquet, commands.parquet, summary.json) "
        "plus generator.parquet (and server.parquet, the target's /metrics every second), and prints a summary.\n\n"
        "At the end the scenario's `slo:` is checked and its pass/fail table printed (as `smsload check RUN`). "
        "Exit 0: the run held and met every objective; 1: an objective violated or not measured, or the run "
        "itself failed (incomplete, load generator saturated, Locust failed); 2: bad input; 130: interrupted.",
        examples=[
            "smsload load quickstart --duration-s 30 --agents 500 --out runs/try",
            "SMS_AUTH_TOKEN=... smsload load capacity-baseline --host https://sms.staging.example",
            "SMS_AK_SK='AK:SK' smsload load quickstart --host https://sms.staging.example   # signed requests",
        ],
    )
    p.add_argument("scenario", metavar="SCENARIO", help=SCENARIO_HELP)
    p.add_argument("--host", help="base URL of the server to load (default: start the reference server on loopback)")
    p.add_argument("--out", type=Path, help="run directory to write (default: runs/NAME-locust-TIMESTAMP)")
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (default 0: one process)")
    p.add_argument("--duration-s", type=float, help="override duration_s (wall-clock seconds)")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--seed", type=int, help="override the scenario's seed (the agents' disks, OS, bandwidth, timing)")
    p.add_argument("--token", help=f"X-Auth-Token for --host (default ${TOKEN_ENV}); never written anywhere")
    p.add_argument(
        "--ak-sk",
        metavar="AK:SK[=PROJECT]",
        help=f"sign the agents' and operator's requests with this key pair (SDK-HMAC-SHA256, as the official SDK "
        f"does) instead of sending the token; the embedded server accepts it. Default ${AK_SK_ENV}, the better "
        "place: a command line is visible to every user of the machine. The secret key is written nowhere",
    )
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
    from loadtests.run import LoadError, LoadFailed, LoadOptions, check_options, run_load  # not for --help
    from loadtests.rundir import default_out
    from sim.signing import parse_ak_sk

    ak_sk_spec = args.ak_sk or os.environ.get(AK_SK_ENV, "").split(",")[0].strip()
    try:
        ak_sk = parse_ak_sk(ak_sk_spec, "--ak-sk" if args.ak_sk else f"${AK_SK_ENV}") if ak_sk_spec else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
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
        ak_sk=ak_sk,
    )
    try:  # the options first: their errors are not hidden behind the scenario's
        check_options(options)
    except LoadError as exc:
        raise UsageError(str(exc)) from None
    scenario = scenario_from_args(
        args.scenario, agents=args.agents, duration_s=args.duration_s, seed=args.seed, say=_say
    )
    out = args.out or default_out(scenario)
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
