"""`smsload report` and `smsload compare` on histogram runs: the pages and tables a row run gets, read off counts.

The histogram runs here are real run directories converted from the session's simulation
runs (`histograms_from_requests`, 1 s bins), so each has a row twin to be checked against:
counts exact, quantiles within the bins' relative error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sim.cli import main
from sim.records import (
    COMMAND_SCHEMA,
    QUANTILES,
    TASK_SCHEMA,
    HistGroup,
    RunDir,
    finish_run,
    hist_table,
    histograms_from_requests,
    load_run,
)
from sim.records.hist import DEFAULT_BINS
from sim.report import metrics as M
from sim.report.analysis import RunAnalysis, analyze_run
from sim.report.compare import compare_runs
from sim.report.html import render_report
from sim.scenario import load_scenario

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "sim" / "scenarios" / "quickstart.yaml"
POLL = "GET /v1/sms/sources/{source_id}/command"
ERR = DEFAULT_BINS.rel_error * (1 + 1e-9)


def smsload(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def _convert(src: Path, dst: Path) -> Path:
    """A histogram run made from row run `src`: its requests counted, its task and command tables kept."""
    rows = load_run(src)
    run = RunDir(dst, load_scenario(QUICKSTART), "des", run_id=f"{rows.manifest['run_id']}-hist")
    run.write_histograms(histograms_from_requests(rows.requests, 1.0, run_id=run.run_id))
    finish_run(
        run,
        complete=True,
        duration_s=float(rows.manifest["duration_s"]),
        wall_s=0.1,
        tasks=pa.Table.from_pandas(rows.tasks, schema=TASK_SCHEMA, preserve_index=False),
        commands=pa.Table.from_pandas(rows.commands, schema=COMMAND_SCHEMA, preserve_index=False),
        server_tables="the simulated control plane",
    )
    return dst


@pytest.fixture(scope="module")
def hist_runs(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> histogram run converted from the row run of the same name (errors: 5 % failed)."""
    base = tmp_path_factory.mktemp("hist-runs")
    return {name: _convert(runs[name], base / name) for name in ("errors", "slow")}


@pytest.fixture(scope="module")
def pair(runs: dict[str, Path], hist_runs: dict[str, Path]) -> tuple[RunAnalysis, RunAnalysis]:
    """(row run, its histogram twin), analysed."""
    return analyze_run(runs["errors"], n_boot=200), analyze_run(hist_runs["errors"], n_boot=200)


def test_the_endpoint_table_matches_the_row_runs(pair: tuple[RunAnalysis, RunAnalysis]) -> None:
    rows, hist = pair
    a, b = rows.endpoints, hist.endpoints
    assert list(a.index) == list(b.index) and M.ALL in b.index and len(b) >= 6
    assert list(a.columns) == list(b.columns)
    for column in ("count", "errors", "throughput_per_s", "throughput_lo", "throughput_hi", "error_rate"):
        assert (a[column] == b[column]).all(), column
    for name in QUANTILES:
        assert (np.abs(b[name] / a[name] - 1) <= ERR).all(), name
        assert (b[f"{name}_lo"] <= b[name]).all() and (b[name] <= b[f"{name}_hi"]).all(), name
    # The page's numbers are summary.json's, read off the same histograms.
    summary = hist.run.summary
    assert summary is not None
    for endpoint, e in {**summary["endpoints"], M.ALL: summary["requests"]}.items():
        assert [b.loc[endpoint, q] for q in QUANTILES] == [e["latency_ms"][q] for q in QUANTILES], endpoint
    assert hist.run.request_count == len(rows.run.requests)


def test_errors_and_series_match_the_row_runs(pair: tuple[RunAnalysis, RunAnalysis]) -> None:
    rows, hist = pair
    key = ["endpoint", "status", "error"]
    a, b = rows.errors.sort_values(key, ignore_index=True), hist.errors.sort_values(key, ignore_index=True)
    assert len(a) > 0 and a[key + ["count"]].equals(b[key + ["count"]]) and np.allclose(a["share"], b["share"])
    for column in ("t_s", "endpoint", "requests", "errors"):
        assert (rows.throughput[column].to_numpy() == hist.throughput[column].to_numpy()).all(), column
    x, y = rows.latency, hist.latency
    assert (x["count"].to_numpy() == y["count"].to_numpy()).all()
    filled = x["count"] > 0
    for name in ("p50", "p95", "p99", "max"):
        assert (np.abs(y.loc[filled, name] / x.loc[filled, name] - 1) <= ERR).all(), name
    per_endpoint = M.percentiles_over_time(rows.run.requests, duration_s=rows.duration_s, by_endpoint=True)
    from sim.report.histrun import percentiles_over_time

    twin = percentiles_over_time(hist.run.histograms, DEFAULT_BINS, hist.duration_s, by_endpoint=True)
    assert (per_endpoint["count"].to_numpy() == twin["count"].to_numpy()).all()


def test_the_report_page_says_where_its_latencies_come_from(pair: tuple[RunAnalysis, RunAnalysis]) -> None:
    rows, hist = pair
    page = render_report(hist)
    assert "Latencies come from histograms (latency_hist.parquet)" in page and "within 0.50%" in page
    assert "Not drawn for a histogram run" in page and f"{len(rows.run.requests):,} requests" in page
    titles = re.findall(r'alt="([^"]*)"', page)
    assert "Throughput over time, by endpoint" in titles and "Latency distribution by endpoint (CDF)" in titles
    assert not any("generator" in t.lower() or "queue wait" in t.lower() for t in titles)
    assert "SMS.9999" in page and "Errors: 5." in page  # failed requests by status, and the 1 % warning
    assert "Tasks by state over time" in titles  # task tables kept beside the histograms


def test_smsload_report_and_compare_on_a_histogram_run(
    runs: dict[str, Path], hist_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    done = smsload("report", str(hist_runs["errors"]), "--resamples", "200")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(hist_runs["errors"] / "report.html")
    assert "Latencies come from histograms" in (hist_runs["errors"] / "report.html").read_text()

    # Rows against their own histograms: every percentile within the bins' error, so +-1 % holds.
    limits = ["--fail-on", "p50:+1%", "--fail-on", "p99:-1%", "--fail-on", "throughput:+0%", "--resamples", "200"]
    out = hist_runs["errors"] / "vs-rows.html"
    assert main(["compare", str(runs["errors"]), str(hist_runs["errors"]), "--out", str(out), *limits]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"all \d+ limit checks passed", printed) and out.is_file()
    page = out.read_text()
    assert "B: Latencies come from histograms" in page and "Latency distribution by endpoint: A vs B" in page

    # A histogram run against a slower one (the 1.5x copy, also as histograms): +50 % seen through the bins.
    assert main(["compare", str(hist_runs["errors"]), str(hist_runs["slow"]), "--fail-on", f"{POLL}:p99:+10%"]) == 1
    poll = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"FAIL: {POLL} p99"))
    assert re.search(r" p99 \+(49|50|51)\.\d% \(limit \+10\.0%\), significant", poll), poll


def test_compare_table_of_a_row_run_and_its_histograms(pair: tuple[RunAnalysis, RunAnalysis]) -> None:
    rows, hist = pair
    table = compare_runs(rows, hist, n_boot=200)
    latency = table[table["metric"].isin(list(QUANTILES))]
    assert (latency["rel"].abs() <= ERR * 1.0001).all() and not latency["significant"].any()
    assert (table.loc[table["metric"] == "throughput", "rel"] == 0).all()
    assert (table.loc[table["metric"] == "error_rate", "diff"] == 0).all()


def test_a_fast_run_with_one_sample_an_empty_group_or_nothing_reports(tmp_path: Path) -> None:
    scenario = load_scenario(QUICKSTART)
    groups = [HistGroup("poll", 200), HistGroup("register", 201), HistGroup("poll", 0, "timeout")]
    counts = np.zeros((3, 10, DEFAULT_BINS.n), np.int64)
    counts[0, 4, DEFAULT_BINS.index(np.array([3.0]))[0]] = 1
    for name, c in (("one", counts), ("nothing", np.zeros_like(counts))):
        run = RunDir(tmp_path / name, scenario, "fast")
        run.write_histograms(hist_table(run.run_id, "fast", groups, 1.0, c))
        finish_run(
            run,
            complete=True,
            duration_s=10.0,
            wall_s=0.01,
            tasks=TASK_SCHEMA.empty_table(),
            commands=COMMAND_SCHEMA.empty_table(),
            server_tables="not modelled by the fast engine",
        )
    one = analyze_run(tmp_path / "one", n_boot=100)
    assert list(one.endpoints.index) == [POLL, M.ALL] and one.endpoints.loc[M.ALL, "count"] == 1
    assert one.endpoints.loc[POLL, "p50"] == one.endpoints.loc[POLL, "max"] == pytest.approx(3.0, rel=ERR)
    assert one.warnings == [] and any("compiled polling engine" in n for n in one.notes)
    page = render_report(one)
    assert "POST /v3/sources" not in page.split('id="errors"')[0] and "1 requests" in page
    assert main(["report", str(tmp_path / "nothing")]) == 0
    assert "No requests were recorded" in (tmp_path / "nothing" / "report.html").read_text()
    assert main(["compare", str(tmp_path / "one"), str(tmp_path / "nothing")]) == 0


def test_centring_a_resample_whose_histogram_quantile_is_zero_warns_of_nothing() -> None:
    """A quantile in bin 0 (values below the histograms' lowest bound) is shifted, not scaled; the
    scaled branch np.where drops must not warn (it once logged "invalid value encountered in multiply")."""
    from sim.report.hist import centred

    resamples = np.array([[0.0, 2.0], [0.0, 3.0]])
    with np.errstate(all="raise"):  # a warning would raise
        out = centred(resamples, np.array([0.5, 4.0]), np.array([0.0, 2.5]))
    np.testing.assert_allclose(out, [[0.5, 3.2], [0.5, 4.8]])
