"""The capacity probe: saturated throughput and the number of concurrent servers, c = X * S.

On synthetic completions (a known plateau) and on simulated runs: a step past the capacity of
a simulated server with 3 workers gives back 3 workers, from a calibration whose base scenario
says 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.des.run import run_des
from sim.report.calibrate import Calibration, calibrate
from sim.report.calibrate_probe import fit_capacity
from sim.scenario import parse_scenario

POLLS = """
name: probe-test
seed: 5
duration_s: 20
fleet:
  agents: 100
  arrival: {kind: ramp, duration_s: 2}
agent:
  poll_interval_s: 1
  poll_jitter_s: 0.2
operator:
  tasks: {kind: waves, waves: []}
server:
  workers: 3
  service_ms: {default: {dist: exponential, mean: 5}}
  rtt_ms: 1
"""


def test_capacity_from_a_synthetic_plateau() -> None:
    """A ramp up to 400/s over 5 s, then 10 s capped at 200/s by 2 servers of 10 ms each."""
    rng = np.random.default_rng(1)
    ramp = np.concatenate([np.sort(rng.uniform(i, i + 1, 40 * (i + 1))) for i in range(5)])
    plateau = np.sort(rng.uniform(5, 15, 2000))
    t_end = np.concatenate([ramp, plateau])
    cap = fit_capacity(t_end, np.full(len(t_end), 10.0), offered_per_s=400)
    assert cap.throughput_per_s == pytest.approx(200, rel=0.05)
    assert cap.servers == 2 and cap.servers_raw == pytest.approx(2, rel=0.05)
    assert not cap.notes


def test_capacity_warns_when_the_probe_did_not_saturate() -> None:
    t_end = np.sort(np.random.default_rng(2).uniform(0, 10, 1000))  # 100/s, offered 100/s
    cap = fit_capacity(t_end, np.full(len(t_end), 1.0), offered_per_s=100)
    assert any("may not have saturated" in note for note in cap.notes)


def test_too_short_a_probe_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        fit_capacity(np.array([0.1, 0.5, 1.2]), np.ones(3))


def test_a_simulated_probe_gives_back_the_number_of_workers(tmp_path: Path) -> None:
    """Low run: 100 polls/s on 3 x 5 ms (utilisation ~0.17). Probe: 1,000 polls/s offered, capacity 600/s."""
    low_scenario = parse_scenario(POLLS)
    probe_scenario = low_scenario.with_overrides(agents=1000)
    low = run_des(low_scenario, tmp_path / "low")
    probe = run_des(probe_scenario, tmp_path / "probe")
    base = low_scenario.with_overrides(fields={"server": {"workers": 1}})
    cal = calibrate(low, base, probe=probe, after_s=3.0)
    assert cal.workers == 3, cal.workers_source
    assert cal.capacity is not None and cal.capacity.throughput_per_s == pytest.approx(600, rel=0.05)
    at = cal.scenario.server.calibrated
    assert at is not None and at.probe_offered_over_capacity > 1.3
    assert at.utilisation == pytest.approx(100 * 0.005 / 3, rel=0.15)


def test_smsload_calibrate_with_a_probe_writes_where_it_was_checked(tmp_path: Path) -> None:
    from sim.cli import main
    from sim.scenario import load_scenario

    low_scenario = parse_scenario(POLLS)
    low = run_des(low_scenario, tmp_path / "low")
    probe = run_des(low_scenario.with_overrides(agents=1000), tmp_path / "probe")
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", str(low), "--probe", str(probe), "--after-s", "3", "-o", str(out)]) == 0
    text = out.read_text()
    assert "saturated throughput" in text and "calibrated: {run_id:" in text
    at = load_scenario(out).server.calibrated
    assert at is not None and at.capacity_per_s == pytest.approx(600, rel=0.05) and at.probe_run_id
    assert main(["calibrate", str(low), "--probe", str(tmp_path / "nowhere"), "-o", str(out)]) == 2
    late = ["--probe", str(probe), "--after-s", "3", "--probe-after-s", "14", "-o", str(out)]
    assert main(["calibrate", str(low), *late]) == 0
    assert main(["calibrate", str(low), "--probe-after-s", "14", "-o", str(out)]) == 2  # no probe to start


def test_the_probe_has_a_window_of_its_own(tmp_path: Path) -> None:
    """`probe_after_s` starts the probe's window (say, after its arrival), not the low run's."""
    from sim.report.calibrate import CalibrationError

    low_scenario = parse_scenario(POLLS)
    low = run_des(low_scenario, tmp_path / "low")
    probe = run_des(low_scenario.with_overrides(agents=1000), tmp_path / "probe")
    base = low_scenario.with_overrides(fields={"server": {"workers": 1}})
    late = calibrate(low, base, probe=probe, after_s=3.0, probe_after_s=14.0)
    assert late.workers == 3 and late.capacity is not None
    assert late.capacity.throughput_per_s == pytest.approx(600, rel=0.05)
    with pytest.raises(CalibrationError, match="at least 3"):  # 1 s bins from 18.5 s to the end at 20 s
        calibrate(low, base, probe=probe, after_s=3.0, probe_after_s=18.5)
    assert calibrate(low, base, probe=probe, after_s=3.0).workers == 3  # the default: the low run's after_s


def _as_load_test(run: Path, dst: Path) -> Path:
    """A copy of simulated run `run` that calibrates as a load test's: executor locust and no
    queue wait column (a load test knows only latency and Server-Timing, here the service time)."""
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.records import REQUEST_SCHEMA

    shutil.copytree(run, dst)
    table = pq.read_table(dst / "requests.parquet").to_pandas()
    table["queue_wait_ms"] = np.nan
    table["executor"] = "locust"
    pq.write_table(pa.Table.from_pandas(table, schema=REQUEST_SCHEMA, preserve_index=False), dst / "requests.parquet")
    manifest = json.loads((dst / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps({**manifest, "executor": "locust"}))
    return dst


def _low_and_probe(tmp_path: Path, probe_median_ms: float) -> tuple[Path, Calibration, Calibration]:
    """A one-worker server whose low run (60 agents) served in 5 ms (median), and a probe (600
    agents) of the same server serving in `probe_median_ms`, both as load tests: the low run, its
    calibration alone, and its calibration with the probe."""

    def server(median_ms: float) -> dict:
        return {"workers": 1, "service_ms": {"default": {"dist": "lognormal", "median": median_ms, "sigma": 0.2}}}

    low_scenario = parse_scenario(POLLS).with_overrides(agents=60, fields={"server": server(5)})
    low = _as_load_test(run_des(low_scenario, tmp_path / "low-sim"), tmp_path / "low")
    probe_scenario = low_scenario.with_overrides(agents=600, fields={"server": server(probe_median_ms)})
    probe = _as_load_test(run_des(probe_scenario, tmp_path / "probe-sim"), tmp_path / "probe")
    return low, calibrate(low, after_s=3.0), calibrate(low, probe=probe, after_s=3.0)


def test_a_probe_faster_than_the_low_runs_requests_makes_a_free_worker_slower(tmp_path: Path) -> None:
    """A low run whose requests took 5 ms each, each finding its worker free (a core woken from
    idle, or a slower machine while it ran), and a probe of the same one-worker server saturating
    at 1 / 4.2 ms: X * S = 1.2 servers, one, whose c / X is less than the low run's handler time.
    Back to back, every service time is c / X; a request that finds its worker free takes the
    difference more (`idle_start_ms`). The simulated server then saturates where the probe's did
    and answers at the low run's load as the low run did (scaled down to c / X, its p50 came out
    low). The round trip is the client's: as measured."""
    low, alone, cal = _low_and_probe(tmp_path, probe_median_ms=4.2)
    assert cal.workers == 1, cal.workers_source
    assert cal.capacity is not None and cal.capacity.throughput_per_s == pytest.approx(1000 / 4.28, rel=0.05)
    mean = cal.scenario.server.service_ms["poll"].mean
    assert mean == pytest.approx(1000 / cal.capacity.throughput_per_s, rel=0.02)
    woke = cal.scenario.server.idle_start_ms
    assert mean + woke == pytest.approx(alone.scenario.server.service_ms["poll"].mean, rel=0.02)
    assert "less than the handler time" in cal.overhead_source and "(idle_start_ms)" in cal.overhead_source
    assert cal.rtt.dist.quantile(0.5) == pytest.approx(alone.rtt.dist.quantile(0.5), rel=0.02)
    # The calibrated scenario saturates where the probe did ...
    sim = run_des(cal.scenario.with_overrides(agents=600), tmp_path / "check")
    assert fit_capacity_of(sim) == pytest.approx(cal.capacity.throughput_per_s, rel=0.05)
    # ... and at the low run's load its latency is the low run's; without the idle start it is not.
    again = run_des(cal.scenario.with_overrides(agents=60), tmp_path / "again")
    assert p50_of(again) == pytest.approx(p50_of(low), rel=0.03)
    server = {**cal.scenario.server.model_dump(mode="json"), "idle_start_ms": 0.0}
    scaled = run_des(cal.scenario.with_overrides(agents=60, fields={"server": server}), tmp_path / "scaled")
    assert p50_of(scaled) < 0.9 * p50_of(low)


def p50_of(run: Path) -> float:
    from sim.records import load_run

    r = load_run(run).requests
    return float(np.median(r.loc[r["ok"] & (r["t_start_s"] >= 3.0), "latency_ms"]))


def fit_capacity_of(run: Path) -> float:
    from sim.records import load_run

    r = load_run(run).requests
    r = r[r["ok"] & (r["t_start_s"] >= 3.0)]
    t_end = r["t_start_s"].to_numpy(dtype=float) + r["latency_ms"].to_numpy(dtype=float) / 1000
    return fit_capacity(t_end, np.ones(len(t_end))).throughput_per_s


def test_a_gap_of_less_than_one_percent_still_sets_the_capacity(tmp_path: Path) -> None:
    """A probe whose c / X is a fraction of a percent from the low run's service: the calibrated
    server still takes c / X per request back to back, so it saturates where the probe's did. (That
    gap used to be left out, within 1% of the service, and the simulated capacity was off by it: at
    90% of capacity 1% is about 10% of the queue's wait.)"""
    _, alone, cal = _low_and_probe(tmp_path, probe_median_ms=5.02)
    assert cal.capacity is not None
    per_request = 1000 / cal.capacity.throughput_per_s
    before = alone.scenario.server.service_ms["poll"].mean
    assert 0.002 < abs(per_request / before - 1) < 0.01  # a gap the old dead zone left out
    assert cal.scenario.server.service_ms["poll"].mean == pytest.approx(per_request, rel=0.001)
    assert "beyond the handler time" in cal.overhead_source or "less than the handler time" in cal.overhead_source
