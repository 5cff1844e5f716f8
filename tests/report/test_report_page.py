"""`smsload report` on real run directories: every figure, no external resource, the warnings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "sim" / "scenarios" / "quickstart.yaml"

IMG = '<img src="data:image/png;base64,'
COMMON = [
    "Throughput over time, by endpoint",
    "Error rate over time",
    "Latency percentiles over time (all requests)",
    "Latency percentiles over time, by endpoint",
    "Latency distribution by endpoint (CDF)",
    "Tasks by state over time",
    "Command dispatch latency, by command",
]
SIM_FIGURES = [*COMMON, "Queue wait over time (simulated server)"]
LOAD_FIGURES = [*COMMON, "Load generator: lag behind schedule and CPU"]
# `smsload load` also scrapes the server's /metrics (server.parquet); the page escapes the quote.
SCRAPED_LOAD_FIGURES = [*LOAD_FIGURES, "The server&#39;s view (its /metrics) beside the load generator&#39;s"]


def smsload(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def figure_titles(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"', page)


def assert_self_contained(page: str) -> None:
    for attr, value in re.findall(r'\b(src|href|action|poster|srcset)\s*=\s*"([^"]*)"', page, flags=re.I):
        assert value.startswith(("data:", "#")), f"{attr}={value[:60]!r} loads or links outside the page"
    assert not re.search(r"<link\b", page, re.I) and "@import" not in page
    assert not re.search(r"<script\b[^>]*\bsrc=", page, re.I) and not re.search(r"url\(\s*['\"]?(?!data:)", page)
    assert "http://" not in page.split('<h2 id="scenario">')[0] and "https://" not in page


def report(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run / "report.html")
    return (run / "report.html").read_text()


def warnings_box(page: str) -> str:
    """The warnings section, which must come before the first table."""
    m = re.search(r'<section class="warnings" id="warnings">(.*?)</section>', page, re.S)
    assert m, "no warnings section"
    assert m.start() < page.index('id="summary"')
    return m.group(1)


def test_report_on_a_simulation_run(runs: dict[str, Path]) -> None:
    done = smsload("report", str(runs["sim"]))
    assert done.returncode == 0, done.stderr
    page_path = runs["sim"] / "report.html"
    assert done.stdout.strip() == str(page_path)
    page = page_path.read_text()
    assert page.count(IMG) == len(SIM_FIGURES) and figure_titles(page) == SIM_FIGURES
    assert_self_contained(page)
    assert 'id="warnings"' not in page  # a clean, complete run
    for text in (
        "GET /v1/sms/sources/{source_id}/command",
        "p99.9 (ms)",
        "Queue wait by endpoint",
        "Command dispatch latency",
        "name: quickstart",
        "bootstrap seed",
        "Simulation: requests leave",
    ):
        assert text in page, text


def test_incomplete_run_is_flagged_at_the_top(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    box = warnings_box(report(runs["incomplete"], capsys))
    assert "Run incomplete" in box and "Errors" not in box


def test_error_rate_above_one_percent_is_flagged(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    page = report(runs["errors"], capsys)
    box = warnings_box(page)
    assert re.search(r"Errors: 5\.\d\d% of requests failed", box)
    assert "Errors on GET /v1/sms/sources/{source_id}/command" in box
    assert "SMS.9999" in page and "Failed requests by status" in page


def test_saturated_generator_on_a_load_test_run(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    page = report(runs["saturated"], capsys)
    box = warnings_box(page)
    assert "generator lag grew" in box and "generator process local was above 90% CPU" in box
    assert figure_titles(page) == LOAD_FIGURES and page.count(IMG) == len(LOAD_FIGURES)
    assert "No queue wait: a load test cannot see the server" in page
    assert_self_contained(page)


def test_a_run_without_requests_still_reports(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    page = report(runs["empty"], capsys)
    box = warnings_box(page)
    assert "Run incomplete" in box and "No requests were recorded" in box
    assert page.count(IMG) == len(SIM_FIGURES) - 1  # no queue wait without requests
    assert_self_contained(page)


@pytest.mark.parametrize("make", ["missing", "file", "empty-dir"])
def test_not_a_run_directory_is_one_line_and_exit_2(make: str, tmp_path: Path) -> None:
    target = tmp_path / "nothing"
    if make == "file":
        target.write_text("x")
    elif make == "empty-dir":
        target.mkdir()
    done = smsload("report", str(target))
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a run directory" in lines[0] and str(target) in lines[0]


@pytest.mark.slow
def test_report_on_a_real_load_test(tmp_path: Path) -> None:
    """`smsload load` (Locust against the embedded reference server), then its report."""
    run = tmp_path / "load"
    done = smsload("load", str(QUICKSTART), "--out", str(run), "--duration-s", "20", "--quiet", timeout=240)
    assert done.returncode == 0, done.stderr
    assert (run / "generator.parquet").is_file()
    done = smsload("report", str(run))
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert figure_titles(page) == SCRAPED_LOAD_FIGURES
    assert_self_contained(page)
    assert "Server time by endpoint" in page and "locust run of scenario quickstart" in page


def test_a_run_with_errors_shows_them_over_time_and_each_endpoints_percentiles(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import shutil

    from sim.report.analysis import analyze_run

    run = tmp_path / "errors"
    shutil.copytree(runs["errors"], run)
    summary = json.loads((run / "summary.json").read_text())
    summary["duration_s"] = 59.5  # the run's last second is half a bin
    (run / "summary.json").write_text(json.dumps(summary))
    page = report(run, capsys)
    titles = figure_titles(page)
    assert "Error rate over time" in titles and "Latency percentiles over time, by endpoint" in titles
    a = analyze_run(run)
    for series in (a.throughput, a.latency, a.latency_by_endpoint, a.lag):
        assert series["t_s"].max() + 1.0 <= 59.5  # whole 1 s bins only: none partial
    total = a.throughput.groupby("t_s")[["requests", "errors"]].sum()
    assert (total["errors"] > 0).sum() > 30  # the failures are spread over the run, bin by bin
    endpoints = set(a.latency_by_endpoint["endpoint"])
    assert "GET /v1/sms/sources/{source_id}/command" in endpoints and "POST /v3/sources" in endpoints
    # Counts are integers and the scenario reads as its file does.
    assert not re.search(r"<td[^>]*>\d[\d,]*\.0</td>", page)
    for text in ("duration_s: 60\n", "rtt_ms: 1\n", "disk_gb: {dist: lognormal, median: 1, sigma: 0.4}"):
        assert text in page, text
