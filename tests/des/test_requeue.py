"""`server.requeue_bodies`: a request with a body queues twice for the worker, as on one event loop.

Near saturation a progress write then waits about twice as long as a poll, which waits once;
without the option both wait alike. With `requeue_at` below 1 it queues again behind only that
share of those waiting, so it waits less than behind all of them, and still more than a poll.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import ScenarioError, parse_scenario

BUSY = """
name: requeue-test
seed: 9
duration_s: 60
fleet: {agents: 180, arrival: {kind: ramp, duration_s: 2}, disk_gb: 100000}
agent: {poll_interval_s: 1, progress_interval_s: 1, bandwidth_mbps: 1, subtask_s: 0}
operator: {tasks: {kind: waves, waves: [{at_s: 2, count: 30}]}, check_interval_s: 10}
server:
  workers: 1
  write_lock: false
  service_ms: {default: {dist: exponential, mean: 4}}
"""


def _waits(path: Path) -> tuple[float, float]:
    r = load_run(path).requests
    r = r[r["t_start_s"] > 10]
    poll = r[r["endpoint"] == "/v1/sms/sources/{source_id}/command"]["latency_ms"].to_numpy()
    progress = r[r["endpoint"].str.endswith("/progress")]["latency_ms"].to_numpy()
    assert len(progress) > 500
    return float(np.mean(poll)), float(np.mean(progress))


def test_a_request_with_a_body_waits_twice_near_saturation(tmp_path: Path) -> None:
    scenario = parse_scenario(BUSY)
    poll, progress = _waits(run_des(scenario, tmp_path / "once"))
    assert 0.7 < progress / poll < 1.4
    server = {**scenario.server.model_dump(mode="json"), "requeue_bodies": True}
    requeued = scenario.with_overrides(fields={"server": server})
    poll, progress = _waits(run_des(requeued, tmp_path / "twice"))
    assert progress / poll > 1.6


def test_a_body_that_queues_behind_a_share_of_the_waiting_waits_less(tmp_path: Path) -> None:
    scenario = parse_scenario(BUSY)
    server = {**scenario.server.model_dump(mode="json"), "requeue_bodies": 2}
    poll, behind_all = _waits(run_des(scenario.with_overrides(fields={"server": server}), tmp_path / "all"))
    shared = scenario.with_overrides(fields={"server": {**server, "requeue_at": 0.5}})
    poll_shared, behind_half = _waits(run_des(shared, tmp_path / "half"))
    # Near saturation (this fleet: 2.16 and 1.72): passes behind half of the waiting wait less,
    # and more than none at all (about one poll's wait, the first test).
    assert 1.3 < behind_half / poll_shared < 0.9 * behind_all / poll


def test_requeue_at_is_a_share_of_the_queue() -> None:
    for bad in ("0", "1.5", "-0.2"):
        with pytest.raises(ScenarioError, match="server.requeue_at"):
            parse_scenario(BUSY + f"  requeue_at: {bad}\n")
