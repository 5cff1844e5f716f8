"""`smsload sweep` end to end: local processes and a Dask LocalCluster, resuming, and its errors.

Each point is a real run of the compiled engine (the default; SimPy where a test says so) of the tiny
scenario (conftest.py): 3 fleet sizes x 2
replications, a fraction of a second each.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sim.scenario import load_scenario
from sim.sweep.grid import parse_vary
from sim.sweep.runner import SweepError, SweepSpec, load_rows, run_sweep
from tests.sweep.conftest import ROOT, smsload

VARY = ["--vary", "agents=50,150,400", "--replications", "2"]
METRICS = ["key", "seed", "agents", "throughput_per_s", "p50_ms", "p95_ms", "p99_ms", "error_rate", "busy_fraction"]


@pytest.fixture(scope="module")
def local_sweep(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("sweep") / "local"
    done = smsload("sweep", str(tiny), *VARY, "--jobs", "2", "--out", str(out))
    return out, done


def test_a_local_sweep_writes_its_table_the_capacity_answer_and_the_knee(local_sweep: tuple[Path, ...]) -> None:
    out, done = local_sweep
    assert done.returncode == 0, done.stderr
    rows = pd.read_parquet(out / "sweep.parquet")
    assert len(rows) == 6 and sorted(rows["replication"]) == [0, 0, 0, 1, 1, 1]
    assert sorted(set(rows["fleet.agents"])) == [50, 150, 400] and set(rows["seed"]) == {5, 6}
    assert set(rows["engine"]) == {"fast"} and rows["complete"].all()  # the default engine
    for row in rows.itertuples():
        assert (out / row.run_dir / "summary.json").exists()
        # the poll rate follows the fleet (one poll a second each), the workers' utilisation too
        assert row.throughput_per_s == pytest.approx(row.agents, rel=0.15)
        assert row.busy_fraction == pytest.approx(row.agents * 0.002, rel=0.15)
    capacity = pd.read_csv(out / "capacity.csv")
    [answer] = capacity.to_dict("records")
    assert answer["bound"] == "interpolated" and answer["replications"] == 2
    assert 150 <= answer["max_agents"] <= 400  # between the last fleet meeting p99 < 20 ms and the first not
    assert answer["max_agents_lo"] < answer["max_agents"] < answer["max_agents_hi"]  # two seeds: a (wide) interval
    assert (out / "capacity.png").read_bytes()[:4] == b"\x89PNG"
    assert "Capacity" in done.stdout and "max_agents" in (out / "capacity.md").read_text()
    points = pd.read_csv(out / "capacity_points.csv")
    assert len(points) == 3 and {"erlang_c_p99_ms", "mva_mean_ms", "theory"} <= set(points.columns)
    low = points[points["agents"] == 50].iloc[0]
    assert low["theory_applies"] and low["theory"] in ("agrees", "DISAGREES")
    assert low["mva_throughput_per_s"] == pytest.approx(50 / 1.0035, rel=0.01)


def test_a_dask_local_cluster_gives_the_same_rows(local_sweep: tuple[Path, ...], tiny: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    out, _ = local_sweep
    base = load_scenario(tiny)
    spec = SweepSpec(base, (parse_vary("agents=50,150,400", base),), replications=2)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        rows = run_sweep(spec, tmp_path / "dask", dask=cluster.scheduler_address)
    assert len(rows) == 6 and (tmp_path / "dask" / "sweep.parquet").exists()
    local = pd.read_parquet(out / "sweep.parquet")[METRICS].sort_values("key").reset_index(drop=True)
    remote = load_rows(tmp_path / "dask")[METRICS].sort_values("key").reset_index(drop=True)
    pd.testing.assert_frame_equal(local, remote)  # the same seeds: the very same simulations


def _mtimes(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "points").glob("*/manifest.json")}


def test_an_interrupted_sweep_resumes_without_redoing_points(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    first = smsload("sweep", str(tiny), *VARY, "--jobs", "1", "--out", str(out), "--max-points", "2", "--quiet")
    assert first.returncode == 0, first.stderr
    assert "4 left" in first.stderr
    before = _mtimes(out)
    kept = load_rows(out)
    assert len(kept) == 2 and set(before) == set(kept["key"])
    second = smsload("sweep", str(tiny), *VARY, "--jobs", "2", "--out", str(out))
    assert second.returncode == 0, second.stderr
    rows = load_rows(out)
    assert len(rows) == 6 and rows["key"].is_unique
    after = _mtimes(out)
    assert {k: after[k] for k in before} == before  # the two done points were not run again
    pd.testing.assert_frame_equal(rows.iloc[:2], kept)
    third = smsload("sweep", str(tiny), *VARY, "--out", str(out), "--quiet")
    assert third.returncode == 0 and _mtimes(out) == after  # nothing left to do


@pytest.mark.slow
def test_ctrl_c_keeps_the_finished_points(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "sim.cli", "sweep", str(tiny), "--vary", "agents=100:400:lin12", "--jobs", "1"]
    proc = subprocess.Popen([*cmd, "--out", str(out), "--quiet"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "sweep.parquet").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before the interrupt arrived")
    assert proc.returncode == 130 and "Traceback" not in err, err
    kept = load_rows(out)
    assert 1 <= len(kept) < 12
    again = subprocess.run([*cmd, "--out", str(out), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert len(load_rows(out)) == 12


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--vary", "fleet.agentz=1,2"], "fleet.agentz"),
        (["--vary", "agents=0,10"], "fleet.agents"),
        (["--vary", "agents=1:10:foo3"], "lo:hi:logN"),
        (["--vary", "agents=10", "--engine", "warp"], "unknown engine 'warp'"),
        (["--vary", "agents=10", "--slo", "p99 of poll < 2 parsecs"], "--slo"),
        (["--vary", "agents=10", "--replications", "0"], "--replications"),
        (["--vary", "agents=10", "--jobs", "0"], "--jobs"),
        ([], "--vary"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny: Path, tmp_path: Path, args: list[str], names: str) -> None:
    done = smsload("sweep", str(tiny), *args, "--out", str(tmp_path / "o"))
    assert done.returncode == 2, done.stderr
    assert names in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "sweep.parquet").exists()


@pytest.mark.skipif(importlib.util.find_spec("sim.fast") is not None, reason="the compiled engine is installed")
def test_the_fast_engine_missing_is_a_clear_error(tiny: Path, tmp_path: Path) -> None:
    done = smsload("sweep", str(tiny), "--vary", "agents=10", "--engine", "fast", "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "engine 'fast' is not available" in done.stderr


def test_another_grid_in_the_same_out_is_refused(local_sweep: tuple[Path, ...], tiny: Path) -> None:
    out, _ = local_sweep
    done = smsload("sweep", str(tiny), "--vary", "agents=50,100", "--out", str(out))
    assert done.returncode == 2 and "holds another sweep (its vary differ)" in done.stderr
    base = load_scenario(tiny)
    with pytest.raises(SweepError, match="another sweep"):
        run_sweep(SweepSpec(base, (parse_vary("workers=1,2", base),)), out)


def test_help_has_an_example() -> None:
    done = smsload("sweep", "--help")
    assert done.returncode == 0 and "--vary agents=1e4:1e6:log8" in done.stdout
