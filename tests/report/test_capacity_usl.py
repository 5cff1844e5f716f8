"""The Universal Scalability Law: recovering known parameters, and `smsload capacity RUN...` on real runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim.records import load_run
from sim.report.capacity_usl import UslError, fit_usl, usl
from tests.sweep.conftest import TINY, smsload


def test_fit_recovers_known_contention_and_coherency() -> None:
    rng = np.random.default_rng(3)
    lam, sigma, kappa = 2.0, 0.03, 4e-5
    levels = {n: usl(n, lam, sigma, kappa) * (1 + 0.03 * rng.standard_normal(60)) for n in [10, 40, 100, 200, 400, 800]}
    fit = fit_usl(levels, n_boot=200)
    assert fit.lam == pytest.approx(lam, rel=0.02)
    assert fit.sigma == pytest.approx(sigma, rel=0.1)
    assert fit.kappa == pytest.approx(kappa, rel=0.1)
    for name, true in (("lam", lam), ("sigma", sigma), ("kappa", kappa)):
        lo, hi = fit.intervals[name]
        assert lo <= true <= hi, (name, lo, true, hi)
    assert fit.peak_agents == pytest.approx(math.sqrt((1 - sigma) / kappa), rel=0.1)
    assert list(fit.table()["parameter"]) == ["lam", "sigma", "kappa"]


def test_fewer_than_three_levels_cannot_be_fitted() -> None:
    with pytest.raises(UslError, match="3 or more fleet sizes, got 2"):
        fit_usl({10: [1.0, 1.1], 20: [2.0, 2.1]})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Simulated runs at four fleet sizes around the one worker's capacity (500 polls/s)."""
    base = tmp_path_factory.mktemp("usl")
    scenario = base / "tiny.yaml"
    scenario.write_text(TINY)
    out = []
    for agents in (100, 300, 600, 900):
        run = base / f"run-{agents}"
        done = smsload("sim", str(scenario), "--agents", str(agents), "--out", str(run), "--quiet")
        # Past the knee the scenario's SLO fails and `sim` says so (exit 1); the run is whole all the same.
        assert done.returncode == (1 if "SLO violated" in done.stderr else 0), done.stderr
        assert load_run(run).manifest["complete"] is True
        out.append(run)
    return out


@pytest.mark.slow
def test_capacity_fits_the_usl_to_runs_at_several_levels(runs: list[Path], tmp_path: Path) -> None:
    done = smsload("capacity", *map(str, runs), "--out", str(tmp_path), "--resamples", "200")
    assert done.returncode == 0, done.stderr
    p = pd.read_csv(tmp_path / "usl.csv").set_index("parameter")["estimate"]
    # about one request a second per agent below saturation (a hard limit the smooth law overshoots a little)
    assert p["lam"] == pytest.approx(1.0, rel=0.25)
    # the worker's 500 polls/s bends the curve: the law puts its peak near there, and describes every level
    assert p["kappa"] > 0 and 500 <= p["peak_agents"] <= 1500
    for agents, measured in [(100, 100.0), (300, 300.0), (600, 480.0)]:
        assert usl(agents, p["lam"], p["sigma"], p["kappa"]) == pytest.approx(measured, rel=0.15)
    assert (tmp_path / "usl.png").read_bytes()[:4] == b"\x89PNG"
    assert "Universal Scalability Law" in done.stdout and "Limits" in (tmp_path / "usl.md").read_text()


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["no/such/dir"], "neither a sweep directory"),
        (["RUN0", "RUN1"], "3 or more fleet sizes"),
        (["RUN0", "RUN0", "RUN1"], "two runs at 100 agents"),
        (["RUN0", "--slo", "p99 of poll < 1 lightyear"], "--slo"),
        (["RUN0", "--resamples", "5"], "--resamples"),
    ],
)
def test_capacity_errors_are_one_line(runs: list[Path], tmp_path: Path, args: list[str], names: str) -> None:
    argv = [str(runs[int(a[3:])]) if a.startswith("RUN") else a for a in args]
    done = smsload("capacity", *argv, "--out", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert names in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
