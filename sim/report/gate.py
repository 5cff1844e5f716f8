"""SLO gates: a finished run checked against its objectives, as a pass/fail table and as JUnit XML.

A gate is what turns a run into a CI verdict. The objectives are the scenario's `slo:` list
(from the run's manifest, so a run is checked against what it was run with) and any given on
the command line (`smsload check RUN --slo EXPR`). An objective the run did not measure (no
request of that endpoint, no command dispatched) fails: nothing shows that it is met.

A load test is also judged on whether the run itself held: a load generator that fell behind
its schedule (the lag test of `sim.report.metrics.generator_saturation`) measured itself,
not the server, and that fails the run as an SLO violation would (`run_failures`).

JUnit XML is the one report format every CI system reads: one `<testsuite>` per run, one
`<testcase>` per objective (and one for the generator), a `<failure>` on each that failed.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sim.records import Run, load_run
from sim.records.summary import stuck_tasks
from sim.slo import SloResult, check

__all__ = ["GateResult", "gate_after_run", "gate_run", "junit_xml", "print_gate"]


class GateResult:
    """A run's verdict: the objectives checked, and what made the run itself fail (empty: it held)."""

    def __init__(self, run: Run, results: list[SloResult], failures: list[str]) -> None:
        self.run, self.results, self.failures = run, results, failures

    @property
    def passed(self) -> bool:
        return not self.failures and all(r.passed for r in self.results)

    @property
    def name(self) -> str:
        return str(self.run.manifest.get("run_id") or self.run.path.name)


def summary_of(run: Run) -> dict[str, Any]:
    """The run's summary.json, with `tasks.stuck` computed from the task table when it predates it."""
    summary: dict[str, Any] = json.loads(json.dumps(run.summary or {}))  # a copy
    tasks = summary.setdefault("tasks", {})
    if "stuck" not in tasks:
        tasks["stuck"] = len(stuck_tasks(run.tasks))
    return summary


def run_failures(run: Run) -> list[str]:
    """Why the run itself failed, whatever its objectives: incomplete, or the load generator saturated."""
    out = []
    if run.manifest.get("complete") is not True:
        out.append("the run is incomplete (interrupted, or it ended early)")
    if run.manifest.get("executor") == "locust" and not run.requests.empty:
        from sim.report import metrics as M
        from sim.report.analysis import run_duration_s

        # The lag test only: the CPU samples of a generator sharing a loaded machine say "busy"
        # more often than "behind", and behind its schedule is what spoils the measurement.
        lag = M.generator_lag(run.requests, run_duration_s(run))
        out += [f"load generator saturated: {r}" for r in M.generator_saturation(lag, None)]
    return out


def gate_run(path: str | Path, extra: Sequence[str] = (), *, scenario_slo: bool = True) -> GateResult:
    """Check the run at `path` against its scenario's `slo:` (unless `scenario_slo` is False) and `extra`.

    Raises `sim.records.RunDirError` for a directory that is not a readable run and
    `sim.slo.SloError` for an expression that cannot be read.
    """
    run = load_run(path)
    slos: list[str] = list(run.manifest.get("scenario", {}).get("slo", ())) if scenario_slo else []
    slos += [s for s in extra if s not in slos]
    return GateResult(run, check(list(slos), summary_of(run)), run_failures(run))


def gate_after_run(out: Path, console: Console | None = None) -> bool:
    """What `smsload sim` and `smsload load` do at the end: check the scenario's `slo:` and print the
    table (nothing when the scenario has none and the run held); whether the run passed."""
    gate = gate_run(out)
    if gate.results or gate.failures:
        print_gate(gate, console)
    return gate.passed


def print_gate(gate: GateResult, console: Console | None = None) -> None:
    """The pass/fail table (rich), and what failed the run itself."""
    console = console or Console(stderr=True)
    if not gate.results and not gate.failures:
        console.print(f"SLO: {gate.name} has no objectives (scenario `slo:` or --slo)")
        return
    if gate.results:
        table = Table(title=f"SLO of {gate.name}", title_justify="left")
        for column in ("objective", "of", "measured", "limit", "verdict"):
            table.add_column(column, justify="right" if column in ("measured", "limit") else "left")
        for r in gate.results:
            verdict = "[green]pass[/]" if r.passed else "[bold red]FAIL[/]"
            table.add_row(r.slo.text, r.slo.describe_endpoint(), r.slo.show(r.value), _limit(r), verdict)
        console.print(table)
    for line in gate.failures:
        console.print(f"[bold red]run failed:[/] {line}")
    failed = sum(not r.passed for r in gate.results) + len(gate.failures)
    console.print("[green]SLO met[/]" if gate.passed else f"[bold red]SLO violated[/] ({failed} failed)")


def _limit(r: SloResult) -> str:
    return f"{r.slo.op} {r.slo.show(r.slo.limit)}"


def junit_xml(gate: GateResult) -> str:
    """JUnit XML of the gate: one testsuite, a testcase per objective and one for the run itself."""
    failures = sum(not r.passed for r in gate.results) + bool(gate.failures)
    suite = ET.Element(
        "testsuite",
        name=f"smsload SLO {gate.name}",
        tests=str(len(gate.results) + 1),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    for r in gate.results:
        case = ET.SubElement(suite, "testcase", classname=f"slo.{gate.name}", name=r.slo.text)
        if not r.passed:
            why = "not measured in this run" if math.isnan(r.value) else f"measured {r.slo.show(r.value)}"
            failure = ET.SubElement(case, "failure", message=f"{r.slo.text}: {why}", type="SloViolation")
            failure.text = f"{r.slo.text} ({r.slo.describe_endpoint()}): {why}, limit {_limit(r)}"
    run_case = ET.SubElement(suite, "testcase", classname=f"slo.{gate.name}", name="the run held")
    if gate.failures:
        failure = ET.SubElement(run_case, "failure", message="; ".join(gate.failures), type="RunFailed")
        failure.text = "\n".join(gate.failures)
    suites = ET.Element("testsuites", tests=suite.get("tests", "0"), failures=str(failures))
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
