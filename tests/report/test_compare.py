"""`smsload compare`: a run against itself, against a 1.5x slower copy, bad limits, the page."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cli import main
from sim.report.analysis import analyze_run
from sim.report.compare import Limit, LimitError, compare_runs, parse_limit

ROOT = Path(__file__).parents[2]
POLL = "GET /v1/sms/sources/{source_id}/command"


def smsload(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_a_run_against_itself_passes(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "same.html"
    done = smsload("compare", str(runs["sim"]), str(runs["sim"]), "--out", str(out), "--fail-on", "p99:+10%")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out) and out.is_file()
    assert "FAIL" not in done.stdout and re.search(r"all \d+ limit checks passed", done.stdout)


def test_a_slower_copy_fails_the_limit(runs: dict[str, Path]) -> None:
    done = smsload("compare", str(runs["sim"]), str(runs["slow"]), "--fail-on", "p99:+10%")
    assert done.returncode == 1, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(runs["slow"] / "compare.html")  # the default page
    poll = next(line for line in done.stdout.splitlines() if line.startswith(f"FAIL: {POLL} p99"))
    # +50 % within the histogram's resolution; 2,398 polls are enough to bound a p99
    assert re.search(r" p99 \+(49|50|51)\.\d% \(limit \+10\.0%\), significant", poll), poll


def test_an_endpoint_scoped_limit(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{POLL}:p50:+60%"  # 1.5x is +50 %: within this limit
    assert main(["compare", str(runs["sim"]), str(runs["slow"]), "--fail-on", spec]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"ok: {re.escape(POLL)} p50 \+(49|50|51)\.\d% \(limit \+60\.0%\), significant", out), out
    assert "all 1 limit checks passed" in out
    assert main(["compare", str(runs["sim"]), str(runs["slow"]), "--fail-on", f"{POLL}:p50:+40%"]) == 1


def test_error_rate_limits_absolute_and_relative(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["sim"]), str(runs["errors"]), "--fail-on", "ALL:error_rate:+0.01"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"FAIL: ALL error_rate \+0\.05\d\d \(limit \+0\.0100\), significant", out)
    assert main(["compare", str(runs["errors"]), str(runs["errors"]), "--fail-on", "error_rate:+1%"]) == 0


@pytest.mark.parametrize(
    "spec, message",
    [
        ("p999:+10%", "unknown metric 'p999'"),
        ("p99:10%", "should be a signed number"),
        ("p99:+10", "p99 limits are relative"),
        ("p99", "expected [ENDPOINT:]METRIC:LIMIT"),
        ("get /x:p99:+1%", "should be 'METHOD /path/template'"),
        ("GET /v9/nowhere:p99:+10%", "no endpoint 'GET /v9/nowhere' in either run"),
    ],
)
def test_a_bad_limit_exits_2_naming_it(runs: dict[str, Path], spec: str, message: str) -> None:
    done = smsload("compare", str(runs["sim"]), str(runs["sim"]), "--fail-on", "p50:+5%", "--fail-on", spec)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert f"--fail-on {spec!r}" in line and message in line


def test_a_limit_that_cannot_be_checked_fails(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs["sim"]), str(runs["empty"]), "--fail-on", f"{POLL}:p99:+10%"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL: cannot check p99 of {POLL}: it has no requests in run B" in out


def test_a_missing_run_exits_2(runs: dict[str, Path], tmp_path: Path) -> None:
    done = smsload("compare", str(runs["sim"]), str(tmp_path / "nope"))
    assert done.returncode == 2 and "not a run directory" in done.stderr


def test_the_compare_page_has_overlays_and_loads_nothing(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cmp.html"
    assert main(["compare", str(runs["sim"]), str(runs["saturated"]), "--out", str(out), "--fail-on", "p90:+10%"]) == 0
    page = out.read_text()
    titles = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]*)"', page)
    assert titles == [
        "Throughput over time: A vs B (all requests)",
        "Latency percentiles over time: A vs B (all requests)",
        "Latency distribution by endpoint: A vs B (CDF)",
    ]
    for value in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page):
        assert value.startswith(("data:", "#"))
    assert "<link" not in page and "@import" not in page and "http" not in page
    assert "B: Load generator saturated" in page  # the runs' own warnings are carried over
    for text in ("Per endpoint: B against A", POLL, "p90", "throughput", "error rate", "Limits (--fail-on)"):
        assert text in page, text


def test_compare_runs_table(runs: dict[str, Path]) -> None:
    a, slow = analyze_run(runs["sim"], n_boot=300), analyze_run(runs["slow"], n_boot=300)
    same = compare_runs(a, a, n_boot=300)
    assert not same["significant"].any() and (same.loc[same["metric"] != "error_rate", "rel"].dropna() == 0).all()
    table = compare_runs(a, slow, n_boot=300).set_index(["endpoint", "metric"])
    for metric in ("p50", "p95", "p99"):
        row = table.loc[(POLL, metric)]
        assert row["rel"] == pytest.approx(0.5, abs=0.02) and row["significant"] and row["lo"] < row["rel"] < row["hi"]
    assert table.loc[(POLL, "throughput"), "rel"] == 0 and not table.loc[(POLL, "throughput"), "significant"]
    assert not table.loc[(POLL, "max"), "significant"]  # a max never has a distribution-free interval


def test_parse_limit() -> None:
    assert parse_limit("p99:+10%") == Limit("p99:+10%", None, "p99", 0.10, True)
    lim = parse_limit(f"{POLL}:throughput:-5%")
    assert (lim.endpoint, lim.metric, lim.limit) == (POLL, "throughput", -0.05)
    assert lim.breached(-0.06) and not lim.breached(-0.04)
    absolute = parse_limit("error_rate:+0.01")
    assert not absolute.relative and absolute.breached(0.011) and not absolute.breached(0.01)
    with pytest.raises(LimitError):
        parse_limit("throughput:+0.5")


def test_tiny_samples_are_marked_and_never_significant(runs: dict[str, Path], tmp_path: Path) -> None:
    from sim.report.compare import TINY, compare
    from sim.report.html import render_compare

    result = compare(analyze_run(runs["sim"]), analyze_run(runs["errors"]))
    table = result.table
    tiny = table[table[["n_a", "n_b"]].min(axis=1) < TINY]
    assert TINY == 6 and len(tiny) and not tiny["enough"].any() and not tiny["significant"].any()
    assert "GET /v3/sources" in set(tiny["endpoint"])  # one request in each run
    page = render_compare(result, ["p50", "throughput", "error_rate"])
    assert "GET /v3/sources   (A: 1 request, B: 1): fewer than 6 requests in a run, too few to compare" in page
    assert "n=1" in page
    done = smsload("compare", str(runs["sim"]), str(runs["errors"]), "--out", str(tmp_path / "c.html"))
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if "GET /v3/sources " in x)
    assert "+0.0%?" in line and "?" in line.split("│")[-2]  # each metric of a one-request endpoint: too few
