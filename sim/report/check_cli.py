"""`smsload check RUN [--slo EXPR ...] [--junit FILE]`: a run's SLO gate for CI (exit 1 on a violation)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sim.cli_support import UsageError, add_command


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "check",
        help="check a run against its scenario's slo: and --slo objectives; exit 1 on a violation",
        description="Check a finished run (simulation or load test) against the objectives of its scenario's "
        "`slo:` list and any --slo given, print a pass/fail table and optionally write JUnit XML.\n\n"
        "Objectives: 'pNN [of ENDPOINT] < N ms|s', 'error rate [of ENDPOINT] < N%', 'pNN dispatch latency "
        "< N s', 'stuck tasks == N' (operators <, <=, >, >=; == for stuck tasks). Exit 0: every objective "
        "met and the run held; 1: an objective violated, not measured, or the run itself failed (incomplete, "
        "load generator saturated); 2: bad input.",
        examples=[
            "smsload check runs/q --slo 'p99 of poll < 200 ms' --slo 'error rate < 0.1%' --junit slo.xml",
            "smsload check runs/q --no-scenario-slo --slo 'stuck tasks == 0'",
        ],
    )
    p.add_argument("run", metavar="RUN", type=Path, help="run directory (from smsload sim or smsload load)")
    p.add_argument(
        "--slo", action="append", default=[], metavar="EXPR", help="a further objective (repeatable), e.g. 'p99 < 1 s'"
    )
    p.add_argument("--no-scenario-slo", action="store_true", help="check only the --slo objectives")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write the verdicts as JUnit XML to FILE")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from sim.records import RunDirError  # pandas: not for --help
    from sim.report.gate import gate_run, junit_xml, print_gate
    from sim.slo import SloError, parse_slo

    for text in args.slo:
        try:
            parse_slo(text)
        except SloError as exc:
            raise UsageError(f"--slo: {exc}") from None
    if not args.run.is_dir():
        raise UsageError(f"{args.run} is not a run directory (no such directory)")
    if args.junit is not None and not args.junit.parent.is_dir():
        raise UsageError(f"--junit: no such directory {args.junit.parent}")
    try:
        gate = gate_run(args.run, args.slo, scenario_slo=not args.no_scenario_slo)
    except RunDirError as exc:
        raise UsageError(str(exc)) from None
    except SloError as exc:  # an SLO in the manifest this version cannot read
        raise UsageError(f"{args.run}: the scenario's slo: {exc}") from None
    if not gate.results and not gate.failures and not args.slo:
        raise UsageError(f"{args.run}: no objectives to check (the scenario has no slo:); give --slo EXPR")
    print_gate(gate)
    if args.junit is not None:
        try:
            args.junit.write_text(junit_xml(gate), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--junit {args.junit}: cannot write: {exc.strerror or exc}") from None
    return 0 if gate.passed else 1
