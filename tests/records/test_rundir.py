"""Run directories: ids, the shared manifest fields, and reading a directory written before they were renamed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.des.run import run_des
from sim.records import REQUEST_SCHEMA, RunDir, default_out, is_finished, load_run, run_id_for
from sim.report.analysis import analyze_run
from sim.scenario import load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"
SHARED_FIELDS = {
    "run_id",
    "executor",
    "clock",
    "scenario",
    "seed",
    "agents",
    "planned_duration_s",
    "duration_s",
    "wall_s",
    "started_at",
    "ended_at",
    "complete",
    "requests",
    "server_tables",
    "latency_histograms",
    "target",
    "t0_epoch",
    "versions",
    "host",
}


def test_a_simulations_id_is_its_scenario_a_load_tests_is_unique() -> None:
    scenario = load_scenario(QUICKSTART)
    assert run_id_for(scenario, "des") == run_id_for(scenario, "des")
    assert run_id_for(scenario, "des") != run_id_for(scenario.with_overrides(seed=7), "des")
    assert run_id_for(scenario, "locust") != run_id_for(scenario, "locust")
    assert run_id_for(scenario, "locust").startswith("quickstart-locust-")
    assert default_out(scenario, "locust").parent == Path("runs")
    assert default_out(scenario, "des").name.startswith("quickstart-des-")


def test_a_new_run_has_every_shared_field_and_is_not_finished(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "r", load_scenario(QUICKSTART), "locust", fields={"target": "http://127.0.0.1:1"})
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert set(manifest) == SHARED_FIELDS and manifest["clock"] == "wall" and manifest["complete"] is False
    assert manifest["target"] == "http://127.0.0.1:1" and not is_finished(tmp_path / "r")
    run.close_requests()
    run.close_requests()  # closing twice keeps the table (an empty one here)
    assert load_run(tmp_path / "r").requests.columns.tolist() == REQUEST_SCHEMA.names
    with pytest.raises(RuntimeError):
        run.append_requests(REQUEST_SCHEMA.empty_table())


def test_a_run_directory_with_the_old_manifest_fields_still_loads_and_reports(tmp_path: Path) -> None:
    scenario = load_scenario(QUICKSTART).with_overrides(agents=10, duration_s=20)
    out = run_des(scenario, tmp_path / "old")
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest) == SHARED_FIELDS
    for field in ("clock", "duration_s", "planned_duration_s", "server_tables", "target", "t0_epoch"):
        del manifest[field]
    manifest["simulated_s"] = 20.0  # the name a simulation's length had before
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "summary.json").unlink()
    run = load_run(out)
    assert run.summary is None and "duration_s" not in run.manifest and len(run.requests) > 0
    a = analyze_run(run, n_boot=50)
    assert 0 < a.duration_s <= 20.0 + 1  # from the span of its requests
    assert "ALL" in a.endpoints.index
