"""Calibration: fit the simulated server to a run, then simulate the same scenario.

The slow tests run one real load test (`smsload load`: the reference server, real HTTP, real
Locust) of a poll-only fleet written here, calibrate the simulation from it and simulate the
same scenario with SimPy. The throughput of a paced polling fleet is set by its pacing and
its latency, not by how fast this machine is, so it can be asserted (within 3 %); latency is
not asserted (the fidelity benchmark measures it). The fast tests calibrate from simulation
runs and check the fits themselves.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.cli import main
from sim.des.run import run_des
from sim.model.distributions import Empirical, LogNormal
from sim.records import load_run
from sim.report.calibrate import RTT_P, calibrate, calibrate_run, fit_rtt, fit_service
from sim.scenario import load_scenario, parse_scenario

ROOT = Path(__file__).parents[2]
POLL = "/v1/sms/sources/{source_id}/command"
TOKEN = "calibrate-test-token-0c41"
# 300 agents polling every second (about 300 polls/s, a few % of one server core): short
# enough for the suite, enough requests (~7,000) for every fit.
POLL_ONLY = """
name: calibrate-poll
description: poll-only fleet for the calibration test
seed: 11
duration_s: 25
fleet:
  agents: 300
  arrival: {kind: ramp, duration_s: 2}
agent:
  poll_interval_s: 1
  poll_jitter_s: 0.2
operator:
  tasks: {kind: waves, waves: []}
server:
  workers: 4
  service_ms: {default: {dist: exponential, mean: 2}}
  rtt_ms: 1
"""


STEADY_FROM_S = 5.0  # after the 2 s arrival ramp, when Locust may still be starting users late


def _rates(path: Path, duration_s: float) -> tuple[float, float]:
    """(all requests, polls) per second sent in the steady window [STEADY_FROM_S, duration_s).

    The arrival ramp is left out: there Locust's own start-up (spawning users on a busy
    machine) delays requests, which the simulation does not model.
    """
    r = load_run(path).requests
    r = r[(r["t_start_s"] >= STEADY_FROM_S) & (r["t_start_s"] < duration_s)]
    span = duration_s - STEADY_FROM_S
    return len(r) / span, int((r["endpoint"] == POLL).sum()) / span


@pytest.fixture(scope="module")
def load_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real load test of POLL_ONLY against the reference server started for it."""
    tmp = tmp_path_factory.mktemp("calibrate")
    (tmp / "poll.yaml").write_text(POLL_ONLY)
    out = tmp / "load"
    env = {"SMS_AUTH_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "load", str(tmp / "poll.yaml"), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_simulating_the_calibrated_scenario_reproduces_the_throughput(load_run_dir: Path, tmp_path: Path) -> None:
    run = load_run(load_run_dir)
    base = parse_scenario(POLL_ONLY).with_overrides(fields={})  # the scenario as the manifest holds it
    # The embedded server: run_load decided public_api_only off (the manifest says what the run did).
    assert run.manifest["scenario"] == base.resolve_public_api(external=False).to_dict()
    calibrated = calibrate_run(load_run_dir, base)
    assert calibrated.server.workers == 1  # smsload serve: one granian worker
    sim = run_des(calibrated, tmp_path / "sim")
    measured, simulated = _rates(load_run_dir, base.duration_s), _rates(sim, base.duration_s)
    assert measured[1] > 200  # the fleet really polled
    for what, m, s in zip(("requests/s", "polls/s"), measured, simulated):
        assert abs(s / m - 1) < 0.03, f"{what}: simulated {s:.1f}, measured {m:.1f}"


@pytest.mark.slow
def test_smsload_calibrate_writes_a_valid_commented_scenario(load_run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibrated.yaml"
    assert main(["calibrate", str(load_run_dir), "-o", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Calibrated by `smsload calibrate`") and "# round trip" in text
    scenario, base = load_scenario(out), parse_scenario(POLL_ONLY)
    for section in ("fleet", "agent", "operator"):
        assert getattr(scenario, section) == getattr(base, section), section
    assert (scenario.name, scenario.duration_s, scenario.seed) == (base.name, base.duration_s, base.seed)
    assert scenario.server.workers == 1 and "poll" in scenario.server.service_ms
    # Service = handler time + the time outside it (default 0.05 ms, or --overhead-ms).
    server_ms = load_run(load_run_dir).requests.query("endpoint == @POLL")["server_ms"].median()
    default = scenario.server.service_ms["poll"].quantile(0.5)
    assert default > server_ms + 0.04
    assert main(["calibrate", str(load_run_dir), "-o", str(out), "--overhead-ms", "0.2"]) == 0
    assert load_scenario(out).server.service_ms["poll"].quantile(0.5) == pytest.approx(default + 0.15, rel=0.05)


@pytest.fixture(scope="module")
def sim_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated run of POLL_ONLY (1 worker, service 0.4 ms lognormal, round trip 2 ms)."""
    scenario = parse_scenario(POLL_ONLY).with_overrides(
        fields={
            "server": {
                "workers": 1,
                "rtt_ms": 2.0,
                "service_ms": {"default": {"dist": "lognormal", "median": 0.4, "sigma": 0.3}},
            }
        }
    )
    return run_des(scenario, tmp_path_factory.mktemp("sim") / "run")


def test_calibrating_a_simulation_recovers_its_server(sim_run_dir: Path) -> None:
    cal = calibrate(sim_run_dir)
    assert cal.overhead_ms == 0 and cal.workers == 1  # a simulation's service time is its whole occupancy
    poll = cal.service["poll"].dist
    assert isinstance(poll, LogNormal)
    assert poll.median == pytest.approx(0.4, rel=0.03) and poll.sigma == pytest.approx(0.3, rel=0.1)
    assert cal.rtt.dist.quantile(0.5) == pytest.approx(2.0, rel=0.01)


def test_smsload_calibrate_works_from_latencies_without_server_time(sim_run_dir: Path, tmp_path: Path) -> None:
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(sim_run_dir, bare)
    table = pq.read_table(bare / "requests.parquet")
    for column in ("server_ms", "queue_wait_ms"):
        i = table.schema.get_field_index(column)
        table = table.set_column(i, column, pa.nulls(table.num_rows, pa.float64()))
    pq.write_table(table, bare / "requests.parquet")
    out = tmp_path / "from-latency.yaml"
    assert main(["calibrate", str(bare), "-o", str(out)]) == 0
    server = load_scenario(out).server
    assert "No server time" in out.read_text()
    # The round trip is the fastest latencies (2 ms + the shortest services); service the rest.
    assert 2.0 <= server.rtt_ms.quantile(0.5) <= 2.3
    assert server.service_ms["poll"].quantile(0.5) == pytest.approx(0.4, abs=0.25)


def test_smsload_calibrate_refuses_what_is_not_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(tmp_path), "-o", str(tmp_path / "x.yaml")]) == 2
    assert main(["calibrate", str(tmp_path / "missing"), "-o", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("smsload calibrate: error:") for line in err)
    assert "no manifest.json" in err[0] and "no such directory" in err[1]
    assert not (tmp_path / "x.yaml").exists()


def test_service_family_follows_the_fit() -> None:
    rng = random.Random(3)
    lognormal = np.array([rng.lognormvariate(np.log(0.2), 0.5) for _ in range(5000)])
    fit = fit_service(lognormal, "test", 0.1)
    assert isinstance(fit.dist, LogNormal) and fit.dist.median == pytest.approx(0.2, rel=0.05)
    bimodal = np.concatenate([lognormal, lognormal * 20])  # two kinds of request under one endpoint
    fit = fit_service(bimodal, "test", 0.1)
    assert isinstance(fit.dist, Empirical)
    assert fit.dist.mean == pytest.approx(bimodal.mean(), rel=0.05)


def test_round_trip_is_fitted_as_measured_and_drawn_once(tmp_path: Path) -> None:
    """The engine draws the round trip once per request: a simulated idle server's latency has the
    fitted round trip's quantiles, p99 included (two independent halves would halve the tail)."""
    rng = np.random.default_rng(5)
    measured = np.exp(rng.normal(0.0, 0.8, 20_000)) + 0.3
    fit = fit_rtt(measured, "test", 0.1)
    want = np.quantile(measured, RTT_P)
    got = np.array([fit.dist.quantile(p) for p in RTT_P])
    assert np.all(np.abs(got / want - 1) < 0.1)
    scenario = parse_scenario(POLL_ONLY).with_overrides(
        duration_s=20,
        fields={"server": {"workers": 4, "service_ms": {"default": 0}, "rtt_ms": fit.dist.to_spec()}},
    )
    latency = load_run(run_des(scenario, tmp_path / "sim")).requests["latency_ms"].to_numpy()
    simulated = np.quantile(latency, RTT_P)
    assert np.all(np.abs(simulated / got - 1) < 0.1), (simulated, got)
