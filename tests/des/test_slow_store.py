"""A slow store in the SimPy simulation: added time inside the service, holding the worker (and the write lock)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import Scenario, ScenarioError, validate_scenario

WINDOW = (10.0, 20.0)


def scenario(liveness: str, write_lock: bool = True, **fault: object) -> Scenario:
    return validate_scenario(
        {
            "name": "slow-store",
            "seed": 5,
            "duration_s": 30,
            "fleet": {"agents": 30},
            "agent": {"poll_interval_s": 1.0, "poll_jitter_s": 0.1, "retry": {"policy": "none"}},
            "server": {
                "workers": 2,
                "write_lock": write_lock,
                "service_ms": {"default": {"dist": "constant", "value": 1.0}},
                "liveness": {"write": liveness},
            },
            "faults": [{"kind": "slow_store", "start_s": 10, "duration_s": 10, "added_ms": 20, **fault}],
        }
    )


def polls(s: Scenario, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The polls whose service started in the window (service starts after the queue wait), and the others."""
    rq = load_run(run_des(s, out)).requests
    p = rq[rq["endpoint"].str.endswith("/command")]
    began = p["t_start_s"] + p["queue_wait_ms"] / 1000
    inside = (began >= WINDOW[0]) & (began < WINDOW[1])
    assert inside.sum() > 200 and (~inside).sum() > 200
    return p[inside], p[~inside]


def test_writes_take_the_added_time_in_the_window_only_holding_their_worker(tmp_path: Path) -> None:
    # Every poll records the visit: every poll is a store write.
    inside, outside = polls(scenario("every_poll"), tmp_path / "run")
    assert (inside["server_ms"] >= 21.0 - 1e-9).all() and inside["ok"].all()
    assert (outside["server_ms"] == 1.0).all()
    assert (inside["latency_ms"] >= 21.0 - 1e-9).all()
    # Held workers (and the lock) make requests queue in the window, and only there.
    assert inside["queue_wait_ms"].mean() > 5.0
    assert outside["queue_wait_ms"].mean() < 0.5


def test_the_write_lock_makes_the_polls_behind_a_slow_write_wait(tmp_path: Path) -> None:
    locked, _ = polls(scenario("every_poll"), tmp_path / "locked")
    unlocked, _ = polls(scenario("every_poll", write_lock=False), tmp_path / "unlocked")
    # 30 writes/s of 21 ms: 0.63 of the one lock, 0.32 of each of two workers without it.
    assert locked["queue_wait_ms"].mean() > 2 * unlocked["queue_wait_ms"].mean()
    assert locked["queue_wait_ms"].quantile(0.9) > 20.0


def test_reads_are_slowed_only_when_the_fault_is_not_writes_only(tmp_path: Path) -> None:
    # Liveness off: a poll only reads.
    inside, _ = polls(scenario("off"), tmp_path / "writes-only")
    assert (inside["server_ms"] == 1.0).all()
    inside, outside = polls(scenario("off", writes_only=False), tmp_path / "all")
    assert (inside["server_ms"] >= 21.0 - 1e-9).all() and (outside["server_ms"] == 1.0).all()


def test_the_fault_as_written_and_as_the_server_holds_it() -> None:
    s = scenario("off", added_ms={"dist": "uniform", "low": 5, "high": 10}, writes_only=False)
    [(start, state), (end, clear)] = s.fault_timeline().changes()
    assert (start, end) == WINDOW
    assert state["slow_store"] == {"added_ms": {"dist": "uniform", "low": 5.0, "high": 10.0}, "writes_only": False}
    assert clear["slow_store"] is None and state["outage"] is None
    with pytest.raises(ScenarioError, match="faults.0.added_ms"):
        scenario("off", added_ms=-1)
    with pytest.raises(ScenarioError, match="faults.0.writes_only"):
        scenario("off", writes_only="sometimes")
