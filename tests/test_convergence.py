"""Zero stuck tasks after an outage, in both worlds; a task that is stuck is listed with the reason.

The scenario is made to catch the agent that gives up: migrations end while the server answers
503 for 6 s, and an agent retries a request only 3 times within about 2 s; then a third of the
agents restart (down 2 s), register again and resume their work. Before agents kept
their unsent state (sim.model.agent), the simulation of it left 6 of its 12 tasks RUNNING or
SYNCING for good; now every agent re-sends its last report once a poll gets through.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import Scenario

ROOT = Path(__file__).parents[1]
SCENARIO: dict[str, Any] = {
    "name": "converge",
    "seed": 7,
    "duration_s": 36,
    "fleet": {"agents": 20, "disk_gb": {"dist": "lognormal", "median": 1.0, "sigma": 0.3}},
    "agent": {
        "poll_interval_s": 1,
        "poll_jitter_s": 0.1,
        "progress_interval_s": 0.5,
        "bandwidth_mbps": {"dist": "constant", "value": 1000},
        "subtask_s": {"dist": "uniform", "low": 0.2, "high": 0.5},
        "failure_probability": 0.1,
        "request_timeout_s": 5,
        "retry": {"policy": "exponential_full_jitter", "base_s": 0.2, "cap_s": 1, "max_attempts": 3},
    },
    "operator": {
        "tasks": {"kind": "waves", "waves": [{"at_s": 1, "count": 12}]},
        "check_interval_s": 0.5,
        "sync_after_s": 1,
        "delete_at_end": True,
    },
    "faults": [
        {"kind": "outage", "start_s": 8, "duration_s": 6, "mode": "http_503"},
        {"kind": "agent_restart", "start_s": 15, "duration_s": 4, "fraction": 0.3, "down_s": 2},
    ],
    "slo": ["stuck tasks == 0"],
}


def _tasks(run: Path) -> dict[str, Any]:
    tasks: dict[str, Any] = json.loads((run / "summary.json").read_text())["tasks"]
    return tasks


def _restarted(run: Path) -> None:
    """The restarted agents registered again, once each (tests/model/test_agent.py: with their ids)."""
    rq = load_run(run).requests
    register = rq[rq["endpoint"] == "/v3/sources"]
    assert register["ok"].all()
    again = register.groupby("agent_id").size()
    assert 3 <= (again == 2).sum() <= 12 and again.max() == 2  # about 0.3 x 20 agents, once each


def test_no_task_is_stuck_after_an_outage_in_the_simulation(tmp_path: Path) -> None:
    run = run_des(Scenario.model_validate(SCENARIO), tmp_path / "run")
    _restarted(run)
    tasks = _tasks(run)
    assert tasks["created"] == 12 and tasks["stuck"] == 0, tasks["unfinished"]
    assert tasks["stuck_after_s"] == pytest.approx(2 * 1.1 + 2 * 0.5 + 5 + 1)
    # The outage did hit the agents' reports: they were refused, and still reached the server.
    rq = load_run(run).requests
    reports = rq[rq["endpoint"].str.endswith("/progress")]
    assert (reports["status"] == 503).sum() > 0
    assert tasks["unfinished_count"] == 0 and tasks["deleted"] == 12  # every lifecycle ran to its end


def test_a_task_whose_agent_is_gone_is_listed_as_stuck_with_the_reason(tmp_path: Path) -> None:
    """Every agent dies (restarts and stays down past the end): the running tasks can never finish."""
    gone = {
        **SCENARIO,
        "faults": [{"kind": "agent_restart", "start_s": 6, "duration_s": 1, "fraction": 1.0, "down_s": 1000}],
    }
    run = run_des(Scenario.model_validate(gone), tmp_path / "run")
    tasks = _tasks(run)
    stuck = [u for u in tasks["unfinished"] if u["stuck"]]
    assert tasks["stuck"] == len(stuck) > 0 and tasks["unfinished_count"] >= len(stuck)
    for u in stuck:
        assert u["state"] in ("RUNNING", "SYNCING", "ABORTING", "DELETING")
        assert u["idle_s"] > tasks["stuck_after_s"] and "nothing moved it for" in u["reason"]
    assert any(" at " in u["reason"] and "% (reported at " in u["reason"] for u in stuck)
    # The gate and the report say so too.
    check = subprocess.run(
        [sys.executable, "-m", "sim.cli", "check", str(run)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert check.returncode == 1 and "stuck tasks == 0" in check.stdout + check.stderr
    subprocess.run([sys.executable, "-m", "sim.cli", "report", str(run)], check=True, capture_output=True, timeout=300)
    page = (run / "report.html").read_text()
    assert 'id="unfinished"' in page and all(u["task_id"] in page for u in stuck)


@pytest.mark.slow
def test_no_task_is_stuck_after_an_outage_in_a_load_test(tmp_path: Path) -> None:
    path, out = tmp_path / "converge.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(SCENARIO))
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "load", str(path), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _restarted(out)
    tasks = _tasks(out)
    assert tasks["created"] == 12 and tasks["stuck"] == 0, tasks["unfinished"]
    rq = load_run(out).requests
    assert (rq.loc[rq["endpoint"].str.endswith("/progress"), "status"] == 503).sum() > 0
