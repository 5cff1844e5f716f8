"""How far to trust a prediction: a simulation beyond its calibration's load carries a warning.

A scenario is calibrated from a simulated low-load run; the same fleet simulated again is
within what was checked, a fleet 8 times larger is not, and the comparison page says so.
"""

from __future__ import annotations

from pathlib import Path

from sim.demo_summary import summary_lines
from sim.des.run import run_des
from sim.records import load_run
from sim.report.analysis import analyze_run
from sim.report.calibrate import calibrate
from sim.report.compare import compare
from sim.report.html import render_compare
from sim.report.trust import trust_lines
from sim.scenario import parse_scenario

POLLS = """
name: trust-test
seed: 3
duration_s: 15
fleet: {agents: 50}
agent: {poll_interval_s: 1, poll_jitter_s: 0.2}
operator: {tasks: {kind: waves, waves: []}}
server:
  workers: 1
  service_ms: {default: {dist: exponential, mean: 2}}
  rtt_ms: 1
"""


def test_a_prediction_beyond_the_checked_load_is_flagged(tmp_path: Path) -> None:
    low = run_des(parse_scenario(POLLS), tmp_path / "low")
    calibrated = calibrate(low).scenario
    assert calibrated.server.calibrated is not None
    assert 0.05 < calibrated.server.calibrated.utilisation < 0.15  # 50/s x 2 ms
    same = load_run(run_des(calibrated, tmp_path / "same"))
    big = load_run(run_des(calibrated.with_overrides(agents=400), tmp_path / "big"))
    notes, warnings = trust_lines(same.requests, same.manifest, 15.0)
    assert notes and "calibrated at utilisation" in notes[0] and not warnings
    notes, warnings = trust_lines(big.requests, big.manifest, 15.0)
    assert warnings and "beyond the checked load" in warnings[0]
    a_low, a_same, a_big = analyze_run(low), analyze_run(same.path), analyze_run(big.path)
    page = render_compare(compare(a_low, a_big), ["p50", "throughput"])
    assert "beyond the checked load" in page
    at = calibrated.server.calibrated
    assert at is not None
    assert f"calibrated at utilisation {at.utilisation:.2f}" in page  # where it was calibrated, on the page
    within = render_compare(compare(a_low, a_same), ["p50"])
    assert "calibrated at utilisation" in within and "beyond the checked load" not in within
    # The demo's summary says the same of its simulation and of its larger fleet.
    lines = summary_lines(a_low, a_same, a_big, 8)
    assert any(line.startswith("trust (simulation): ") and "calibrated at utilisation" in line for line in lines)
    assert any(line.startswith("warning (8x simulation): prediction beyond the checked load") for line in lines)
    assert not any(line.startswith("warning (simulation): prediction beyond") for line in lines)
    uncalibrated = load_run(low)
    assert trust_lines(uncalibrated.requests, uncalibrated.manifest, 15.0) == ([], [])
