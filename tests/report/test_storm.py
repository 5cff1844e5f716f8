"""The reconnect storm in both worlds: full jitter against no jitter, the report and the comparison page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.des.run import run_des
from sim.records import load_run
from sim.report.storm import storm_metrics, storm_of_run
from sim.scenario import validate_scenario
from sim.scenarios import find_scenario

ROOT = Path(__file__).parents[2]
NO_JITTER = "exponential"  # the same backoff, without the jitter
FULL_JITTER = "exponential_full_jitter"


def peak(out: Path) -> float:
    run = load_run(out)
    [storm] = storm_of_run(run, float(run.manifest["duration_s"]))
    return storm.peak_per_s


def test_storm_metrics_of_a_made_up_run() -> None:
    """Steady 10 ok/s, an outage 20-30 s with nothing ok, a spike of 50 at 30 s, then slow for 5 s, then steady."""
    t, ok, lat = [], [], []
    for second in range(60):
        n = 50 if second == 30 else 10
        for i in range(n):
            t.append(second + i / n)
            ok.append(not 20 <= second < 30)
            lat.append(100.0 if 30 <= second < 35 else 5.0)
    rq = pd.DataFrame({"t_start_s": t, "ok": ok, "latency_ms": lat})
    s = storm_metrics(rq, 20.0, 30.0, 60.0, window_s=5.0, baseline_s=20.0)
    assert s.before_ok_per_s == 10.0 and s.before_p99_ms == 5.0
    assert s.peak_per_s == 50.0 and s.peak_at_s == 30.0
    assert s.recover_s == 5.0  # the first 5 s window with the rate and the p99 back
    assert s.recovery_p99_ms == 100.0
    never = storm_metrics(rq.assign(ok=rq["t_start_s"] < 20), 20.0, 30.0, 60.0, window_s=5.0)
    assert never.recover_s is None


def test_the_storm_scenario_in_the_simulation_full_jitter_lowers_the_peak(tmp_path: Path) -> None:
    base = find_scenario("reconnect-storm")
    assert base.fleet.agents == 10_000 and base.faults[0].duration_s == 60
    peaks = {}
    for policy in (NO_JITTER, FULL_JITTER):
        s = base.with_overrides(agents=300, duration_s=120, fields={"agent.retry.policy": policy})
        peaks[policy] = peak(run_des(s, tmp_path / policy))
    # Without jitter the whole fleet retries in the same instant; with it, spread over the cap.
    assert peaks[FULL_JITTER] < peaks[NO_JITTER] / 2
    assert peaks[NO_JITTER] >= 300


def test_the_fast_engine_storm_is_read_off_its_histograms(tmp_path: Path) -> None:
    """The shipped scenario at full size goes to the fast engine (no operator work, 10,000 agents)."""
    pytest.importorskip("numba")
    from sim.fast.run import run_fast

    peaks = {}
    for policy in (NO_JITTER, FULL_JITTER):
        s = find_scenario("reconnect-storm").with_overrides(agents=2000, fields={"agent.retry.policy": policy})
        peaks[policy] = peak(run_fast(s, tmp_path / policy))
    assert peaks[FULL_JITTER] < peaks[NO_JITTER] / 2 and peaks[NO_JITTER] >= 2000


def _short_storm(policy: str) -> dict[str, Any]:
    """The storm scenario, small: 40 agents, an 8 s outage in a 30 s run, backoff capped at 8 s
    (without jitter: tries at 0, 1, 3, 7 and 15 s, the last after the outage)."""
    data = find_scenario("reconnect-storm").to_dict()
    data["fleet"]["agents"] = 40
    data["duration_s"] = 30
    data["faults"][0]["duration_s"] = 8
    data["agent"]["retry"] |= {"policy": policy, "cap_s": 8}
    data["slo"] = []
    validate_scenario(data)
    return data


@pytest.mark.slow
def test_the_storm_in_a_load_test_full_jitter_lowers_the_peak_and_compare_shows_both(tmp_path: Path) -> None:
    # The two load tests at once (40 agents each are light work): the test takes one run's time.
    runs, started = {}, {}
    for policy in (NO_JITTER, FULL_JITTER):
        path, runs[policy] = tmp_path / f"{policy}.yaml", tmp_path / f"load-{policy}"
        path.write_text(yaml.safe_dump(_short_storm(policy)))
        started[policy] = subprocess.Popen(
            [sys.executable, "-m", "sim.cli", "load", str(path), "--out", str(runs[policy]), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
    try:
        errors = [proc.communicate(timeout=240)[1] for proc in started.values()]
    finally:
        for proc in started.values():  # only on a timeout: the runs we started, by their PIDs
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, err in zip(started.values(), errors):
        assert proc.returncode == 0, err[-3000:]
    peaks = {policy: peak(out) for policy, out in runs.items()}
    assert peaks[FULL_JITTER] < peaks[NO_JITTER]
    assert peaks[NO_JITTER] >= 30  # most of the 40 agents in one second

    sim = run_des(validate_scenario(_short_storm(FULL_JITTER)), tmp_path / "sim")
    page = tmp_path / "compare.html"
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "compare", str(sim), str(runs[FULL_JITTER]), "--out", str(page)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    html = page.read_text()
    assert "Reconnect storm: A and B" in html and "outage 1: peak request rate" in html
    report = subprocess.run(
        [sys.executable, "-m", "sim.cli", "report", str(runs[NO_JITTER])], capture_output=True, text=True, timeout=240
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Reconnect storm" in (runs[NO_JITTER] / "report.html").read_text()
    assert np.isfinite(peaks[FULL_JITTER])


def test_an_outage_from_the_start_is_judged_against_the_settled_end_of_the_run() -> None:
    """No before: the reference is the second half after the outage, not the storm itself."""
    t, ok = [], []
    for second in range(40):
        n = 0 if second < 10 else (40 if second < 20 else 10)  # down, then a long storm, then steady
        t += [second + i / max(n, 1) for i in range(n)]
        ok += [True] * n
    rq = pd.DataFrame({"t_start_s": t, "ok": ok, "latency_ms": [5.0] * len(t)})
    s = storm_metrics(rq, 0.0, 10.0, 40.0, window_s=5.0)
    assert s.before_ok_per_s == 10.0  # from 25 s to 40 s
    assert s.recover_s == 10.0  # the storm lasts until 20 s
