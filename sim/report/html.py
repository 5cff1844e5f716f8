"""The HTML pages: one self-contained file per report or comparison (Jinja2, figures as data URIs).

A page loads nothing: CSS is inline, figures are base64 PNG `data:` URIs, links are in-page
anchors only. So it opens offline, can be attached to a ticket, and leaks nothing to a CDN.
Templates are in `sim/report/templates/`; this module turns metric tables into rows of
formatted cells, so the templates hold layout only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
from matplotlib.figure import Figure

from sim import __version__
from sim.records import QUANTILES
from sim.report import figures as F
from sim.report import overlays as O
from sim.report.analysis import RunAnalysis, report_figures
from sim.report.compare import TINY, Comparison
from sim.report.hist import min_samples
from sim.report.scenario_yaml import scenario_yaml
from sim.report.storm import storm_of_run
from sim.report.trust import trust_lines

TEMPLATES = Path(__file__).parent / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
LATENCY_NAMES = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99_9": "p99.9", "max": "max"}


@dataclass
class Cell:
    """A table cell: its value, an optional interval underneath, and CSS classes."""

    v: str
    ci: str = ""
    cls: str = ""
    span: int = 1


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[Cell]]
    note: str = ""
    anchor: str = ""
    empty: str = "nothing to show"


@dataclass
class Picture:
    title: str
    uri: str


@dataclass
class Page:
    """What a template gets besides its own extras."""

    title: str
    subtitle: str
    warnings: list[str]
    notes: list[str]
    sections: list[dict[str, Any]] = field(default_factory=list)


def num(v: Any) -> str:
    """A number for a table: about three significant digits, thousands separated; '-' for none."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–" if v is None or math.isnan(v) else ("∞" if v > 0 else "-∞")
    v = float(v)
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    return f"{v:.{2 if a >= 1 else 3 if a >= 0.01 else 4}f}" if a >= 0.0001 else f"{v:.2g}"


def pct(v: Any, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(float(v)) else f"{float(v):.{digits}%}"


def change(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return "+∞" if math.isinf(v) else f"{v:+.1%}"


def interval_cells(row: pd.Series, names: Iterable[str]) -> list[Cell]:
    """Value cells with their 95 % interval; grey when the group is too small for a trustworthy one."""
    out = []
    for name in names:
        weak = row["count"] < min_samples(QUANTILES[name]) if name in QUANTILES else False
        ci = f"{num(row[f'{name}_lo'])} – {num(row[f'{name}_hi'])}" if f"{name}_lo" in row.index else ""
        out.append(Cell(num(row[name]), ci, "weak" if weak else ""))
    return out


WEAK_NOTE = (
    "Under each value: its 95% bootstrap interval. Grey intervals: fewer samples than a distribution-free "
    "interval needs (6 for p50, 36 for p90, 72 for p95, 368 for p99, 3,688 for p99.9; never for the max): "
    "they understate the uncertainty."
)


def endpoint_rows(table: pd.DataFrame) -> list[list[Cell]]:
    rows = []
    for endpoint, r in table.iterrows():
        rows.append(
            [
                Cell(str(endpoint), cls="name"),
                Cell(f"{int(r['count']):,}"),
                Cell(num(r["throughput_per_s"]), f"{num(r['throughput_lo'])} – {num(r['throughput_hi'])}"),
                Cell(
                    pct(r["error_rate"]),
                    f"{pct(r['error_rate_lo'])} – {pct(r['error_rate_hi'])}",
                    "bad" if r["error_rate"] > 0.01 else "",
                ),
                *interval_cells(r, LATENCY_NAMES),
            ]
        )
    return rows


def plain(v: Any) -> str:
    """A table value as text: a count as an integer (17, not 17.0; pandas makes counts floats next to
    nulls), '–' for null, anything else as it is."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer():
        return f"{int(v):,}"
    return str(v)


def quantile_rows(table: pd.DataFrame, lead: list[str]) -> list[list[Cell]]:
    """Rows of a quantile table: the `lead` columns (index first) then count and p50 .. max."""
    rows = []
    for key, r in table.iterrows():
        first = [Cell(str(key), cls="name")] + [Cell(plain(r[c])) for c in lead]
        rows.append([*first, Cell(f"{int(r['count']):,}"), *interval_cells(r, LATENCY_NAMES)])
    return rows


def _figures(figs: list[Figure]) -> list[Picture]:
    pictures = [Picture(F.title_of(f), F.data_uri(f)) for f in figs]
    for f in figs:
        f.clear()  # the PNG is all we keep; large runs would otherwise hold every figure's artists
    return pictures


def _metadata(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    def text(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, float) and v.is_integer():
            return f"{int(v)}"  # 60, as the scenario says it, not 60.0
        return json.dumps(v, default=str)

    return [(k, text(v)) for k, v in manifest.items() if k != "scenario"]


def _q_headers(unit: str) -> list[str]:
    return [f"{n} ({unit})" for n in LATENCY_NAMES.values()]


def _storm_value(v: float | None, unit: str) -> str:
    if v is None:
        return "not recovered"
    return "n/a" if math.isnan(v) else f"{v:,.1f} {unit}"


STORM_ROWS: list[tuple[str, str, str]] = [
    ("requests/s before (ok)", "before_ok_per_s", "/s"),
    ("p99 before", "before_p99_ms", "ms"),
    ("peak request rate", "peak_per_s", "/s"),
    ("peak at", "peak_at_s", "s"),
    ("time to recover", "recover_s", "s"),
    ("p99 during recovery", "recovery_p99_ms", "ms"),
]
STORM_NOTE = (
    "Per outage of the scenario. Peak: the most requests sent in one second from the outage's end on. "
    "Recovered: the first window (two poll intervals, at least 5 s) after the outage in which the rate of "
    "successful requests is within 10 % of before and the p99 at most 10 % above it; time to recover counts "
    "from the outage's end to that window's start."
)


def storm_table(a: RunAnalysis) -> Table:
    """The run's reconnect-storm section: a row per figure, a column per outage."""
    storms = storm_of_run(a.run, a.duration_s)
    headers = ["", *[f"outage {s.outage_start_s:g}-{s.outage_end_s:g} s" for s in storms]]
    rows = [
        [Cell(label, cls="name"), *[Cell(_storm_value(getattr(s, key), unit)) for s in storms]]
        for label, key, unit in STORM_ROWS
    ]
    return Table("Reconnect storm", headers, rows if storms else [], STORM_NOTE, "storm", "no outage in this run")


def render_report(a: RunAnalysis) -> str:
    """The report page of one run (a string of HTML)."""
    m = a.run.manifest
    state = "complete" if m.get("complete") else "INCOMPLETE"
    tables = {
        "endpoints": Table(
            "Requests by endpoint",
            ["endpoint", "requests", "per s", "error rate", *_q_headers("ms")],
            endpoint_rows(a.endpoints),
            WEAK_NOTE,
            "endpoints",
            "no requests",
        ),
        "errors": Table(
            "Failed requests by status",
            ["endpoint", "status", "error", "count", "share of endpoint"],
            [
                [
                    Cell(r.endpoint, cls="name"),
                    Cell(str(r.status)),
                    Cell("" if pd.isna(r.error) else str(r.error)),
                    Cell(f"{r.count:,}"),
                    Cell(pct(r.share)),
                ]
                for r in a.errors.itertuples()
            ],
            "Status 0: no answer (timeout or refused connection).",
            "errors",
            "no failed requests",
        ),
        "server": Table(
            "Server time by endpoint",
            ["endpoint", "requests", *_q_headers("ms")],
            quantile_rows(a.server_time, []),
            "Simulation: the service time drawn by the server model. Load test: the server's own time "
            "from its Server-Timing header.",
            "server",
            "no server time recorded",
        ),
        "queue": Table(
            "Queue wait by endpoint",
            ["endpoint", "requests", *_q_headers("ms")],
            quantile_rows(a.queue_wait, []),
            "Time a request waited for a worker of the simulated server.",
            "queue-wait",
            "no queue wait (recorded by simulations only)",
        ),
        "lifecycle": Table(
            "Task lifecycle: time per stay in each state",
            ["state", "still there at the end", "stays", *_q_headers("s")],
            quantile_rows(a.lifecycle, ["open"]),
            "",
            "lifecycle",
            "no task events",
        ),
        "dispatch": Table(
            "Command dispatch latency",
            ["stage", "command", "missing", "commands", *_q_headers("ms")],
            quantile_rows(a.dispatch.set_index("stage"), ["command_name", "missing"]),
            "missing: commands that had not reached the end of the stage when the run ended.",
            "dispatch",
            "no commands",
        ),
        "storm": storm_table(a),
    }
    pictures = _figures(report_figures(a))
    page = Page(
        f"Run report: {a.run_id}",
        f"{a.executor} run of scenario {m.get('scenario', {}).get('name', '?')}, {state}, "
        f"{a.duration_s:,.1f} s, {a.run.request_count:,} requests",
        a.warnings,
        a.notes,
    )
    return _env.get_template("report.html").render(
        page=page,
        tables=tables,
        pictures=pictures,
        scenario=scenario_yaml(m.get("scenario") or {}),
        metadata=_metadata(m),
        tasks=(a.run.summary or {}).get("tasks", {}),
        seed=a.seed,
        version=__version__,
        generated=datetime.now(UTC).isoformat(timespec="seconds"),
        path=str(a.run.path),
    )


def write_report(a: RunAnalysis, out: Path | None = None) -> Path:
    """Write the report page (default RUN/report.html) and return its path."""
    out = Path(out) if out else a.run.path / "report.html"
    out.write_text(render_report(a), encoding="utf-8")
    return out


def render_page(template: str, **context: Any) -> str:
    """Render any template of this package with the shared helpers (for the compare page)."""
    return _env.get_template(template).render(
        version=__version__, generated=datetime.now(UTC).isoformat(timespec="seconds"), **context
    )


def _change_cells(r: pd.Series) -> list[Cell]:
    if r["ci"] == "diff":  # error rate: an absolute difference, in percentage points
        pp = lambda v: "–" if not math.isfinite(v) else f"{v * 100:+.2f} pp"
        return [
            Cell(pp(r["diff"]), change(r["rel"]) + " relative" if math.isfinite(r["rel"]) else ""),
            Cell(f"{pp(r['lo'])} … {pp(r['hi'])}"),
        ]
    return [Cell(change(r["rel"])), Cell(f"{change(r['lo'])} … {change(r['hi'])}")]


def _sized(value: str, n: int) -> Cell:
    """A run's value; from fewer than TINY requests it is greyed and says on how many."""
    return Cell(value, f"n={n:,}", "weak tiny") if n < TINY else Cell(value)


def compare_rows(table: pd.DataFrame, metrics: Iterable[str]) -> list[list[Cell]]:
    """Rows of the side-by-side table: a header row per endpoint (with both runs' requests), then one row per metric.

    An endpoint with fewer than `TINY` requests in either run is marked in its header and its
    values: a change measured on a request or two is no evidence (and never significant).
    """
    rows: list[list[Cell]] = []
    shown = table[table["metric"].isin(list(metrics))]
    for endpoint, group in shown.groupby("endpoint", sort=False):
        na, nb = int(group["n_a"].iloc[0]), int(group["n_b"].iloc[0])
        head = f"{endpoint}   (A: {na:,} request{'' if na == 1 else 's'}, B: {nb:,})"
        if min(na, nb) < TINY:
            head += f": fewer than {TINY} requests in a run, too few to compare"
        rows.append([Cell(head, cls="group tiny" if min(na, nb) < TINY else "group", span=6)])
        for _, r in group.iterrows():
            is_rate = r["metric"] == "error_rate"
            value = pct if is_rate else num
            verdict = "yes" if r["significant"] else "no" if r["enough"] else "too few requests"
            rows.append(
                [
                    Cell(LATENCY_NAMES.get(r["metric"], r["metric"].replace("_", " ")), cls="name"),
                    _sized(value(r["a"]), na),
                    _sized(value(r["b"]), nb),
                    *_change_cells(r),
                    Cell(verdict, cls="sig" if r["significant"] else ""),
                ]
            )
    return rows


def _storm_side_by_side(c: Comparison) -> Table:
    """The reconnect storm of both runs side by side (a simulation against a load test, typically)."""
    a = storm_of_run(c.a.run, c.a.duration_s)
    b = storm_of_run(c.b.run, c.b.duration_s)
    rows = []
    for i in range(max(len(a), len(b))):
        for label, key, unit in STORM_ROWS:
            cells = [_storm_value(getattr(x[i], key), unit) if i < len(x) else "-" for x in (a, b)]
            rows.append([Cell(f"outage {i + 1}: {label}", cls="name"), Cell(cells[0]), Cell(cells[1])])
    return Table("Reconnect storm: A and B", ["", "A", "B"], rows, STORM_NOTE, "storm", "no outage in either run")


def render_compare(c: Comparison, metrics: Iterable[str]) -> str:
    """The comparison page of two runs (HTML string), showing `metrics` side by side."""
    labels = c.labels()
    figs = [
        O.throughput_overlay(c.a.throughput, c.b.throughput, labels),
        O.percentiles_overlay(c.a.latency, c.b.latency, labels),
        O.cdf_overlay(c.a.latency_hist, c.b.latency_hist, labels),
    ]
    checks = Table(
        "Limits (--fail-on)",
        ["limit", "endpoint", "result", "significant", "detail"],
        [
            [
                Cell(r.spec, cls="name"),
                Cell(r.endpoint, cls="name"),
                Cell("FAIL" if r.breached else "ok", cls="fail" if r.breached else "pass"),
                Cell(r.significance),
                Cell(r.message, cls="name"),
            ]
            for r in c.checks.itertuples()
        ],
        "",
        "limits",
        "no limits given",
    )
    side = Table(
        "Per endpoint: B against A",
        ["metric", "A", "B", "change B vs A", "95% interval", "significant"],
        compare_rows(c.table, metrics),
        "Latency in ms, throughput in requests/s. Change: B / A - 1 (error rate: B - A in percentage points). "
        "Significant: the 95% interval of the change excludes zero (percentiles: bootstrap of both runs' "
        "histograms; throughput: exact Poisson rate ratio; error rate: Newcombe) and both runs have enough "
        f"requests: at least {TINY} of the endpoint (greyed values with n= under them have fewer), and for a "
        "percentile as many as a distribution-free interval needs (368 for p99).",
        "side",
        "no requests",
    )
    storm = _storm_side_by_side(c)
    warnings = [f"A: {w}" for w in c.a.warnings] + [f"B: {w}" for w in c.b.warnings]
    notes = [f"A: {n}" for n in c.a.notes] + [f"B: {n}" for n in c.b.notes]
    for which, x in (("A", c.a), ("B", c.b)):  # how far a prediction was checked
        trust_notes, trust_warnings = trust_lines(x.run.requests, x.run.manifest, x.duration_s)
        notes += [f"{which}: {n}" for n in trust_notes]
        warnings += [f"{which}: {w}" for w in trust_warnings]
    failed = c.checks[c.checks["breached"]] if not c.checks.empty else c.checks
    page = Page(f"Comparison: {c.b.run_id} against {c.a.run_id}", f"{labels[0]}  ·  {labels[1]}", warnings, notes)
    return render_page(
        "compare.html",
        page=page,
        checks=checks,
        side=side,
        storm=storm,
        pictures=_figures(figs),
        failed=len(failed),
        limits=len(c.limits),
        runs=[
            (labels[i], x.duration_s, x.run.request_count, x.run.manifest.get("complete"), str(x.run.path))
            for i, x in enumerate((c.a, c.b))
        ],
    )
