"""summary.json and the report page of the same run show the same quantiles, to the bit and to the printed digit."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.des.run import run_des
from sim.records import QUANTILES, load_run
from sim.report import metrics as M
from sim.report.analysis import RunAnalysis, analyze_run
from sim.report.html import LATENCY_NAMES, endpoint_rows, num, render_report
from sim.report.tasks import MIGRATION
from sim.scenario import load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> RunAnalysis:
    scenario = load_scenario(QUICKSTART).with_overrides(agents=60, duration_s=45)
    return analyze_run(run_des(scenario, tmp_path_factory.mktemp("agree") / "run"), n_boot=200)


def test_every_endpoint_has_the_same_quantiles_in_summary_and_report(analysis: RunAnalysis) -> None:
    summary = load_run(analysis.run.path).summary
    assert summary is not None
    expected = {name: e["latency_ms"] for name, e in summary["endpoints"].items()}
    expected[M.ALL] = summary["requests"]["latency_ms"]
    table = analysis.endpoints
    assert set(table.index) == set(expected) and len(expected) >= 6
    for endpoint, stats in expected.items():
        for name in QUANTILES:
            assert table.loc[endpoint, name] == stats[name], (endpoint, name)
            assert table.loc[endpoint, f"{name}_lo"] <= stats[name] <= table.loc[endpoint, f"{name}_hi"]
    # And as printed: the page's cells are the summary's numbers formatted.
    page = render_report(analysis)
    for row in endpoint_rows(table):
        endpoint, cells = row[0].v, row[4:]
        assert [c.v for c in cells] == [num(expected[endpoint][q]) for q in LATENCY_NAMES], endpoint
        assert all(f"{c.v}<" in page for c in cells)


def test_migration_and_dispatch_quantiles_agree_too(analysis: RunAnalysis) -> None:
    summary = load_run(analysis.run.path).summary
    assert summary is not None
    migration = summary["tasks"]["migration_s"]
    dispatch = summary["dispatch"]["enqueue_to_deliver_ms"]
    stage = analysis.dispatch.set_index("stage").loc["enqueued -> first delivered"]
    all_commands = stage[stage["command_name"] == "ALL"].iloc[0]
    for name in QUANTILES:
        assert analysis.lifecycle.loc[MIGRATION, name] == migration[name], name
        assert all_commands[name] == dispatch[name], name
