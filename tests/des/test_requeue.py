"""`server.requeue_bodies`: a request with a body queues twice for the worker, as on one event loop.

Near saturation a progress write then waits about twice as long as a poll, which waits once;
without the option both wait alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import parse_scenario

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
