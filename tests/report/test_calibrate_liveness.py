"""Calibration keeps the scenario's liveness: it fits service times, not how the server records visits."""

from __future__ import annotations

from pathlib import Path

from sim.des.run import run_des
from sim.model.liveness import Liveness, LivenessWrite
from sim.report.calibrate import calibrate_run
from sim.scenario import parse_scenario

SCENARIO = """
name: calibrate-liveness
duration_s: 15
fleet: {agents: 100, arrival: {kind: ramp, duration_s: 1}}
agent: {poll_interval_s: 1, poll_jitter_s: 0.1}
server:
  service_ms: {default: 1, poll: {dist: lognormal, median: 0.4, sigma: 0.3}}
  liveness: {write: every_poll, disconnect_after_s: 5}
"""


def test_the_calibrated_scenario_records_visits_as_the_base_did(tmp_path: Path) -> None:
    base = parse_scenario(SCENARIO)
    calibrated = calibrate_run(run_des(base, tmp_path / "run"), base)
    assert calibrated.server.liveness == base.server.liveness == Liveness(LivenessWrite.EVERY_POLL, 30.0, 5.0)
    assert calibrated.server.service_ms != base.server.service_ms  # it did fit something
