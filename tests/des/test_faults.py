"""Outages and timeouts in the SimPy simulation, as an agent's HTTP client sees them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import Scenario, ScenarioError, validate_scenario


def scenario(**changes: object) -> Scenario:
    data: dict = {
        "name": "faults",
        "seed": 4,
        "duration_s": 40,
        "fleet": {"agents": 50},
        "agent": {"poll_interval_s": 1.0, "poll_jitter_s": 0.1, "retry": {"policy": "fixed", "base_s": 0.5}},
        "server": {"workers": 2, "service_ms": {"default": {"dist": "constant", "value": 1.0}}},
    }
    data.update(changes)
    return validate_scenario(data)


def polls(out: Path):
    rq = load_run(out).requests
    return rq[rq["endpoint"].str.endswith("/command")]


@pytest.mark.parametrize(("mode", "status", "error"), [("refused", 0, "refused"), ("http_503", 503, "SMS.0503")])
def test_an_outage_fails_every_request_in_its_window_and_only_those(
    mode: str, status: int, error: str, tmp_path: Path
) -> None:
    s = scenario(faults=[{"kind": "outage", "start_s": 10, "duration_s": 10, "mode": mode}])
    p = polls(run_des(s, tmp_path / "run"))
    # Arrival at the server is the send time plus half a round trip, which is 0 here.
    inside = (p["t_start_s"] >= 10) & (p["t_start_s"] < 20)
    assert inside.sum() > 0 and (~inside).sum() > 0
    failed = p[inside]
    assert (failed["status"] == status).all() and (failed["error"] == error).all()
    assert failed["server_ms"].isna().all()  # refused at the door: no worker
    assert p[~inside]["ok"].all()
    # Retries every 0.5 s: the fleet polls twice as often while the server is down.
    assert inside.sum() / 10 > 1.6 * (~inside).sum() / 30


def test_a_slow_answer_is_a_timeout_at_the_deadline_and_the_server_still_works(tmp_path: Path) -> None:
    s = scenario(
        duration_s=30,
        fleet={"agents": 4},
        agent={"poll_interval_s": 1.0, "request_timeout_s": 0.5, "retry": {"policy": "none"}},
        server={"workers": 1, "service_ms": {"default": {"dist": "constant", "value": 800.0}}},
    )
    run = load_run(run_des(s, tmp_path / "run"))
    rq = run.requests
    timeouts = rq[rq["error"] == "timeout"]
    assert len(timeouts) > 0 and (timeouts["status"] == 0).all()
    np.testing.assert_allclose(timeouts["latency_ms"], 500.0)
    # Nothing can answer within 0.5 s when a request alone takes 0.8 s: every request times out,
    # and the agents go on polling (one interval after each timeout), not waiting for the server.
    assert (rq["error"] == "timeout").all()
    assert len(rq) > 4 * 30 / 1.5 * 0.9


def test_faults_must_fit_the_run_and_each_other() -> None:
    with pytest.raises(ScenarioError) as exc:
        scenario(
            faults=[
                {"kind": "outage", "start_s": 10, "duration_s": 10},
                {"kind": "outage", "start_s": 15, "duration_s": 5},
                {"kind": "outage", "start_s": 50, "duration_s": 5},
            ]
        )
    text = str(exc.value)
    assert "faults.1.start_s" in text and "faults.2.start_s" in text and "before duration_s" in text
    with pytest.raises(ScenarioError, match="faults.0.mode"):
        scenario(faults=[{"kind": "outage", "start_s": 1, "duration_s": 1, "mode": "sometimes"}])


def test_an_error_rate_answers_its_fraction_at_the_door_in_its_window_only(tmp_path: Path) -> None:
    s = scenario(
        agent={"poll_interval_s": 1.0, "poll_jitter_s": 0.1, "retry": {"policy": "none"}},
        faults=[{"kind": "error_rate", "start_s": 10, "duration_s": 20, "fraction": 0.3, "status": 500}],
    )
    p = polls(run_des(s, tmp_path / "run"))
    inside = (p["t_start_s"] >= 10) & (p["t_start_s"] < 30)
    failed = p[~p["ok"]]
    assert len(failed) > 0 and (failed["status"] == 500).all()
    assert failed["server_ms"].isna().all()  # answered at the door
    assert p[~inside]["ok"].all()
    share = (~p[inside]["ok"]).mean()
    assert 0.25 < share < 0.35  # ~1,000 polls in the window: 0.3 within a few standard deviations


def test_added_latency_delays_requests_in_its_window_and_a_long_one_times_out(tmp_path: Path) -> None:
    s = scenario(faults=[{"kind": "latency", "start_s": 10, "duration_s": 10, "added_ms": 300}])
    p = polls(run_des(s, tmp_path / "run"))
    inside = (p["t_start_s"] >= 10) & (p["t_start_s"] < 20)
    assert (p[inside]["latency_ms"] >= 300).all() and p[inside]["ok"].all()
    assert (p[~inside]["latency_ms"] < 300).all()
    slow = scenario(
        agent={"poll_interval_s": 1.0, "request_timeout_s": 0.5, "retry": {"policy": "none"}},
        faults=[{"kind": "latency", "start_s": 10, "duration_s": 10, "added_ms": 800}],
    )
    q = polls(run_des(slow, tmp_path / "slow"))
    late = q[(q["t_start_s"] >= 10) & (q["t_start_s"] < 20)]
    assert len(late) > 0 and (late["error"] == "timeout").all()
    np.testing.assert_allclose(late["latency_ms"], 500.0)


def test_the_fault_timeline_lists_the_server_states_in_time_order() -> None:
    s = scenario(
        faults=[
            {"kind": "outage", "start_s": 5, "duration_s": 5, "mode": "http_503"},
            {"kind": "latency", "start_s": 10, "duration_s": 5, "added_ms": {"dist": "uniform", "low": 1, "high": 2}},
            {"kind": "error_rate", "start_s": 20, "duration_s": 5, "fraction": 0.5},
        ]
    )
    changes = s.fault_timeline().changes()
    assert [t for t, _ in changes] == [5, 10, 15, 20, 25]
    assert changes[0][1]["outage"] == "http_503"
    assert (
        changes[1][1]["latency_ms"] == {"dist": "uniform", "low": 1.0, "high": 2.0} and changes[1][1]["outage"] is None
    )
    assert changes[3][1]["error_rate"] == 0.5 and changes[3][1]["error_status"] == 503
    assert (
        changes[2][1]
        == changes[4][1]
        == {"outage": None, "latency_ms": None, "error_rate": 0.0, "error_status": 503, "slow_store": None}
    )
