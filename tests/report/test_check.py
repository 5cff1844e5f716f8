"""`smsload check`: a real simulated run gated on its SLO; exit codes 0, 1 and 2; JUnit XML parsed back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from sim.cli import main
from sim.des.run import run_des
from sim.records import load_run
from sim.scenarios import find_scenario

QUICKSTART_SLO = ("p99 of poll < 5 s", "error rate < 50%", "p95 dispatch latency < 60 s", "stuck tasks <= 20")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart, shortened, with objectives it meets."""
    scenario = find_scenario("quickstart").with_overrides(duration_s=30, fields={"slo": list(QUICKSTART_SLO)})
    return run_des(scenario, tmp_path_factory.mktemp("check") / "run")


def test_a_run_that_meets_its_slo_exits_0_and_writes_junit_with_every_objective(run: Path, tmp_path: Path) -> None:
    junit = tmp_path / "slo.xml"
    assert main(["check", str(run), "--junit", str(junit)]) == 0
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [*QUICKSTART_SLO, "the run held"]
    assert suite.get("tests") == str(len(cases)) and suite.get("failures") == "0"
    assert not suite.findall(".//failure")


def test_a_violated_objective_exits_1_and_is_a_junit_failure(run: Path, tmp_path: Path, capsys) -> None:
    junit = tmp_path / "slo.xml"
    code = main(
        ["check", str(run), "--slo", "p99 of poll < 0.001 ms", "--slo", "stuck tasks == 0", "--junit", str(junit)]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "FAIL" in err and "SLO violated" in err
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    failed = {c.get("name"): c.find("failure") for c in suite.findall("testcase")}
    assert failed["p99 of poll < 0.001 ms"] is not None
    assert "measured" in (failed["p99 of poll < 0.001 ms"].get("message") or "")  # type: ignore[union-attr]
    assert failed["p99 of poll < 5 s"] is None
    stuck = load_run(run).summary["tasks"]["stuck"]  # type: ignore[index]
    assert (failed["stuck tasks == 0"] is None) is (stuck == 0)
    assert int(suite.get("failures") or 0) == 1 + (stuck > 0)


def test_an_objective_the_run_did_not_measure_fails(run: Path) -> None:
    # A simulation never calls the export API: nothing shows these objectives are met.
    assert main(["check", str(run), "--no-scenario-slo", "--slo", "p99 of export_commands < 1 s"]) == 1
    assert main(["check", str(run), "--no-scenario-slo", "--slo", "error rate of export_commands < 100%"]) == 1
    assert main(["check", str(run), "--no-scenario-slo", "--slo", "p99 of poll < 5 s"]) == 0


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--slo", "p99 of nowhere < 1 ms"], "--slo"),
        (["--slo", "stuck tasks == 1.5"], "whole number"),
        (["--junit", "/no/such/dir/x.xml"], "--junit"),
    ],
)
def test_bad_input_exits_2_with_one_line(run: Path, argv: list[str], names: str, capsys) -> None:
    assert main(["check", str(run), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert names in err and "\n" not in err and "Traceback" not in err


def test_not_a_run_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["check", str(tmp_path / "missing")]) == 2
    assert main(["check", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_the_summary_counts_stuck_tasks_and_dispatch(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert isinstance(summary["tasks"]["stuck"], int)
    assert summary["dispatch"]["enqueue_to_deliver_ms"]["p95"] is not None
