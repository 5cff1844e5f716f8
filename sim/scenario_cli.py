"""`smsload validate SCENARIO...`: check scenario files and summarise what each one asks for.

A SCENARIO is a path or the name of a shipped scenario. Exit 0 when every file is valid;
otherwise every problem of every file is printed as `PATH: message` and the exit code is 2.
A bad file is the user's to fix, so never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from sim.cli_support import SCENARIO_HELP, add_command
from sim.scenarios import find_scenario

if TYPE_CHECKING:
    from sim.scenario import Scenario


def register(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "validate",
        help="check scenario files",
        description="Check scenario files (or shipped scenarios) and summarise what each one asks for. Every "
        "problem of every file is printed as FILE: FIELD.PATH: message, and the exit code is 2.",
        examples=[
            "smsload validate quickstart",
            "smsload validate my-scenario.yaml runs/qs-calibrated.yaml",
        ],
    )
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", help=SCENARIO_HELP + "; one or more")
    parser.set_defaults(func=run_validate)


def summary(scenario: Scenario) -> str:
    """One line: what load this scenario puts on the server."""
    agent = scenario.agent
    jitter = f" +- {agent.poll_jitter_s:g}" if agent.poll_jitter_s else ""
    return (
        f"{scenario.name}: {scenario.fleet.agents:,} agents, {scenario.duration_s:g} s, "
        f"poll every {agent.poll_interval_s:g}{jitter} s, "
        f"{scenario.expected_polls_per_s:,.1f} polls/s expected"
    )


def run_validate(args: argparse.Namespace) -> int:
    from sim.scenario_yaml import ScenarioError  # PyYAML: imported by the command, not by `smsload --help`

    failed = 0
    for path in args.scenarios:
        try:
            scenario = find_scenario(path)
        except ScenarioError as exc:
            failed += 1
            count = len(exc.problems)
            print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
            for line in exc.lines():
                print(f"  {line}", file=sys.stderr)
            continue
        print(f"{path}: ok - {summary(scenario)}")
    return 2 if failed else 0
