"""The capacity answer as text: rich tables on the terminal and capacity.md / usl.md beside the figures."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from sim.report.capacity_usl import UslFit

HOW_TO_READ = """\
How to read it: `max_agents` is the largest fleet meeting every objective, interpolated
(log value / limit against log fleet size) between the last grid point that meets them and the
first that does not, per replication; the estimate is the geometric mean over replications and `max_agents_lo`..`hi` its
95 % interval (Student's t on the logarithms: the spread between seeds). `bound` says
`above grid` when the largest fleet swept still met the SLO (the answer is at least that: sweep
further) and `below grid` when the smallest already failed. `erlang_c_max_agents` is what the
M/M/c model predicts for a poll-latency objective; in the points table `theory` is `agrees` or
`DISAGREES` where the theory applies (exponential poll service, utilisation < 0.9, polls >= 90 %
of the requests, no write lock on polls, no faults) and `n/a: why` elsewhere.
"""

USL_LIMITS = """\
Limits: the USL describes throughput only (no latency, no SLO). It needs levels where the
throughput already bends; far below saturation the fit is a line, sigma and kappa are near 0
with wide intervals, and the extrapolation is a guess. Three levels is the least for three
parameters, and few levels make wide intervals. Levels must share the poll interval (lambda is
about 1 / poll interval for a polling fleet).
"""


# Terminal headers (the files keep the full names).
_SHORT = {
    "poll_interval_s": "poll_s",
    "throughput_per_s": "polls/s",
    "utilisation": "util",
    "erlang_c_p99_ms": "erlangC_p99",
    "mva_mean_ms": "mva_mean",
    "replications": "reps",
    "max_agents_lo": "lo",
    "max_agents_hi": "hi",
    "erlang_c_max_agents": "erlangC_max",
}


def _cell(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1000:
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (pandas' own needs the tabulate package)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def capacity_markdown(table: pd.DataFrame, points: pd.DataFrame, slo: list[str]) -> str:
    return (
        f"# Capacity\n\nObjectives: {'; '.join(f'`{s}`' for s in slo)}\n\n"
        f"{markdown_table(table)}\n![knee](capacity.png)\n\n{HOW_TO_READ}\n"
        f"## Points beside the theory\n\n{markdown_table(points)}"
    )


def usl_markdown(fit: UslFit) -> str:
    peak = fit.peak_agents
    return (
        "# Universal Scalability Law\n\nX(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))\n\n"
        f"{markdown_table(fit.table())}\nPeak at about {_cell(peak)} agents.\n\n"
        f"## Levels\n\n{markdown_table(fit.levels)}\n![usl](usl.png)\n\n{USL_LIMITS}"
    )


def print_frame(console: Any, df: pd.DataFrame, title: str) -> None:
    """A DataFrame as a rich table (numbers right-aligned, NaN as '-')."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    cells = [[_cell(v) for v in row] for row in df.itertuples(index=False)]
    for i, col in enumerate(df.columns):
        numeric = pd.api.types.is_numeric_dtype(df[col])
        width = max((len(row[i]) for row in cells), default=1)  # numbers are never cut; text may wrap
        name = _SHORT.get(str(col), str(col).rsplit(".", 1)[-1])
        t.add_column(name, justify="right" if numeric else "left", min_width=width if numeric else None)
    for row in cells:
        t.add_row(*row)
    console.print(t)
