"""A load test plays the scenario's fault timeline against the real reference server, on the run's clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim.records import load_run

ROOT = Path(__file__).parents[2]
SCENARIO = {
    "name": "load-faults",
    "seed": 3,
    "duration_s": 14,
    "fleet": {"agents": 10},
    "agent": {"poll_interval_s": 0.5, "poll_jitter_s": 0.1, "retry": {"policy": "fixed", "base_s": 0.25}},
    "operator": {"tasks": {"kind": "waves", "waves": []}},
    "faults": [
        {"kind": "outage", "start_s": 4, "duration_s": 3, "mode": "http_503"},
        {"kind": "error_rate", "start_s": 9, "duration_s": 3, "fraction": 0.5, "status": 500},
        # Every store transaction, a poll's read included, 40 ms longer inside the server.
        {"kind": "slow_store", "start_s": 12, "duration_s": 1.5, "added_ms": 40, "writes_only": False},
    ],
    # The faults make the first objective fail: `smsload load` then exits 1 (the run itself is fine).
    "slo": ["error rate < 0.1%", "p99 of poll < 10 s"],
}


@pytest.mark.slow
def test_the_fault_timeline_reaches_the_server_in_its_windows(tmp_path: Path) -> None:
    path, out = tmp_path / "faults.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(SCENARIO))
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "load", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert "SLO violated (1 failed)" in done.stderr and "error rate < 0.1%" in done.stderr
    assert load_run(out).manifest["complete"] is True
    applied = json.loads((out / "faults.json").read_text())
    assert applied["error"] is None
    assert [a["t_s"] for a in applied["applied"]] == [4, 7, 9, 12, 13.5]
    assert applied["applied"][3]["state"]["slow_store"]["writes_only"] is False
    rq = load_run(out).requests
    rq = rq[rq["endpoint"].str.endswith("/command")]
    # A change lands a little after it is due (an HTTP request from another thread): judge the
    # windows with a margin of half a second on each side.
    late = max(a["late_s"] for a in applied["applied"])
    assert late < 0.5
    outage = rq[(rq["t_start_s"] >= 4.5) & (rq["t_start_s"] < 6.5)]
    assert len(outage) > 10 and (outage["status"] == 503).all()
    errors = rq[(rq["t_start_s"] >= 9.5) & (rq["t_start_s"] < 11.5)]
    assert set(errors["status"]) == {200, 500}
    slow = rq[(rq["t_start_s"] >= 12.5) & (rq["t_start_s"] < 13.0)]
    assert len(slow) > 3 and slow["ok"].all() and (slow["latency_ms"] >= 40).all()
    clear = rq[(rq["t_start_s"] < 3.5) | ((rq["t_start_s"] >= 7.5) & (rq["t_start_s"] < 8.5))]
    assert len(clear) > 10 and clear["ok"].all()
    assert "SMSLOAD_ADMIN_TOKEN" not in (out / "server.log").read_text()


def test_a_host_without_the_fault_switch_or_its_token_is_refused_before_anything_runs(tmp_path: Path) -> None:
    from loadtests.run import LoadError, LoadOptions, run_load
    from sim.scenario import validate_scenario
    from sim.server.process import run_server

    scenario = validate_scenario(SCENARIO)
    with run_server("memory://", ["tok"], tmp_path / "server.log") as server:
        with pytest.raises(LoadError, match="admin token: --admin-token"):
            run_load(scenario, tmp_path / "a", LoadOptions(host=server.base_url, token="tok"))
        options = LoadOptions(host=server.base_url, token="tok", admin_token="adm")
        with pytest.raises(LoadError, match="no fault admin endpoint"):
            run_load(scenario, tmp_path / "b", options)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
