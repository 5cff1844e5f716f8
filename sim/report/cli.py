"""`smsload report RUN` and `smsload compare RUN_A RUN_B`: the HTML pages, and limits for CI."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from sim.cli_support import UsageError, add_command

N_BOOT = 1000  # = sim.report.hist.N_BOOT, not imported: registering a subcommand must not import pandas


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "report",
        help="write RUN/report.html: tables with confidence intervals, figures, warnings",
        description="Read a run directory (simulation or load test) and write one self-contained HTML page: "
        "per-endpoint latency percentiles and throughput with 95% intervals, errors and error rate over "
        "time, percentiles over time per endpoint, tasks, command dispatch, the scenario and the run's "
        "metadata, with warnings at the top (run incomplete, errors above 1%, load generator saturated). "
        "Prints the page's path.",
        examples=[
            "smsload report runs/qs                      # writes runs/qs/report.html",
            "smsload report runs/qs --out /tmp/qs.html",
        ],
    )
    p.add_argument("run", metavar="RUN", type=Path, help="run directory (from smsload sim or smsload load)")
    p.add_argument("--out", type=Path, help="page to write (default: RUN/report.html)")
    p.add_argument("--resamples", type=int, default=N_BOOT, help=f"bootstrap resamples (default {N_BOOT})")
    p.set_defaults(func=_report)

    c = add_command(
        sub,
        "compare",
        help="compare two runs per endpoint (B against A), with significance and --fail-on limits",
        description="Compare RUN_B against RUN_A per endpoint (p50, p95, p99, throughput, error rate): relative "
        "changes, their 95% intervals and whether they are significant (an endpoint with fewer than 6 "
        "requests in a run never is); overlay figures; an HTML page. Works across executors (simulation "
        "vs load test). Exit code 1 when a --fail-on limit is breached, 0 otherwise, 2 on bad input.",
        examples=[
            "smsload compare runs/sim runs/load          # writes runs/load/compare.html",
            "smsload compare base/ new/ --fail-on 'p99:+10%' --fail-on 'error_rate:+0.01'",
        ],
    )
    c.add_argument("run_a", metavar="RUN_A", type=Path, help="baseline run directory (A)")
    c.add_argument("run_b", metavar="RUN_B", type=Path, help="run directory compared against it (B)")
    c.add_argument("--out", type=Path, help="page to write (default: RUN_B/compare.html)")
    c.add_argument(
        "--fail-on",
        action="append",
        default=[],
        metavar="SPEC",
        help="[ENDPOINT:]METRIC:LIMIT, e.g. 'p99:+10%%', 'throughput:-5%%', 'error_rate:+0.01', "
        "'GET /v1/sms/sources/{source_id}/command:p99:+10%%'; metrics p50, p90, p95, p99, p99_9, "
        "max, throughput, error_rate; repeatable. Without an endpoint: every endpoint of both runs "
        "and ALL",
    )
    c.add_argument("--resamples", type=int, default=N_BOOT, help=f"bootstrap resamples (default {N_BOOT})")
    c.set_defaults(func=_compare)


def _analyze(path: Path, resamples: int) -> Any:
    from sim.records import RunDirError
    from sim.report.analysis import analyze_run

    if not path.is_dir():
        raise UsageError(f"{path} is not a run directory (no such directory)")
    try:
        return analyze_run(path, n_boot=resamples)
    except RunDirError as exc:
        raise UsageError(str(exc)) from None


def _check_resamples(n: int) -> None:
    if n < 100:
        raise UsageError(f"--resamples must be at least 100, got {n}")


def _report(args: argparse.Namespace) -> int:
    from sim.report.html import write_report

    _check_resamples(args.resamples)
    analysis = _analyze(args.run, args.resamples)
    print(write_report(analysis, args.out))
    return 0


def _cell(table: Any, endpoint: str, metric: str) -> str:
    row = table[(table["endpoint"] == endpoint) & (table["metric"] == metric)].iloc[0]
    value = row["diff"] * 100 if metric == "error_rate" else row["rel"]
    if not math.isfinite(value):
        return "-" if math.isnan(value) else "+inf"
    text = f"{value:+.2f}pp" if metric == "error_rate" else f"{value:+.1%}"
    return text + ("*" if row["significant"] else "?" if not row["enough"] else "")


def _compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sim.report.compare import SHOWN, TINY, LimitError, compare, parse_limit
    from sim.report.html import render_compare

    _check_resamples(args.resamples)
    try:  # bad limits fail before any run is read
        limits = [parse_limit(spec) for spec in args.fail_on]
    except LimitError as exc:
        raise UsageError(str(exc)) from None
    a, b = _analyze(args.run_a, args.resamples), _analyze(args.run_b, args.resamples)
    try:
        result = compare(a, b, limits, n_boot=args.resamples)
    except LimitError as exc:
        raise UsageError(str(exc)) from None
    shown = list(dict.fromkeys([*SHOWN, *(lim.metric for lim in limits)]))
    out = args.out or args.run_b / "compare.html"
    out.write_text(render_compare(result, shown), encoding="utf-8")

    console = Console(width=max(Console().width, 140))
    t = Table(title=f"B {b.run_id} ({b.executor}) vs A {a.run_id} ({a.executor})")
    t.add_column("endpoint", no_wrap=True)
    t.add_column("n A", justify="right")
    t.add_column("n B", justify="right")
    for metric in shown:
        t.add_column(metric, justify="right")
    for endpoint in result.table["endpoint"].unique():
        first = result.table[result.table["endpoint"] == endpoint].iloc[0]
        t.add_row(
            endpoint, f"{first['n_a']:,}", f"{first['n_b']:,}", *[_cell(result.table, endpoint, m) for m in shown]
        )
    console.print(t)
    console.print(
        "relative change B vs A (error_rate: percentage points); n: requests in each run; * significant at 95%; "
        f"? too few requests to tell (fewer than {TINY} in a run, or fewer than the percentile needs)",
        highlight=False,
    )
    for message in result.checks["message"]:
        console.print(message, highlight=False, markup=False, soft_wrap=True)
    if limits:
        n = int(result.checks["breached"].sum())
        console.print(
            f"{n} of {len(result.checks)} limit checks failed"
            if n
            else f"all {len(result.checks)} limit checks passed",
            highlight=False,
        )
    print(out)
    return 1 if result.failed else 0
