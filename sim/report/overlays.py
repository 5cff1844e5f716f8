"""Overlays of two runs for a comparison (A solid blue, B dashed orange): each takes both runs' tables.

Inputs are the tables of `sim.report.metrics` for each run (or their `RunAnalysis` fields),
as in `sim.report.figures`, whose conventions they share: legends outside the curves, whole
time bins only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sim.report.figures import TIME_LABEL, legend_outside, log_x, new_figure, no_data
from sim.report.hist import GroupHistograms

STYLE: dict[int, dict[str, str]] = {
    0: {"color": "tab:blue", "linestyle": "-"},
    1: {"color": "tab:orange", "linestyle": "--"},
}


def throughput_overlay(
    a: pd.DataFrame,
    b: pd.DataFrame,
    labels: tuple[str, str],
    title: str = "Throughput over time: A vs B (all requests)",
) -> Figure:
    """Total requests per second of both runs, from their `throughput_over_time` tables."""
    fig, (ax,) = new_figure(title)
    for i, series in enumerate((a, b)):
        total = series.groupby("t_s", sort=True)["per_s"].sum()
        ax.step(total.index, total.to_numpy(), where="post", linewidth=1.3, label=labels[i], **STYLE[i])
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("requests / s (1 s bins)")
    legend_outside(ax, "run")
    return fig


def percentiles_overlay(
    a: pd.DataFrame,
    b: pd.DataFrame,
    labels: tuple[str, str],
    names: tuple[str, ...] = ("p50", "p99"),
    title: str = "Latency percentiles over time: A vs B (all requests)",
) -> Figure:
    """Percentiles per second of both runs (one panel per percentile), from `percentiles_over_time`."""
    fig, axes = new_figure(title, size=(10.0, 2.8 * len(names) + 0.6), rows=len(names))
    for ax, name in zip(axes, names):
        for i, series in enumerate((a, b)):
            shown = series[series["count"] > 0]
            ax.plot(shown["t_s"], shown[name], linewidth=1.2, label=labels[i], **STYLE[i])
        if any(len(line.get_xdata()) for line in ax.lines):
            ax.set_yscale("log")
            legend_outside(ax, "run")
        ax.set_ylabel(f"{name.replace('_', '.')} latency (ms)")
    axes[-1].set_xlabel(TIME_LABEL)
    return fig


def cdf_overlay(
    a: GroupHistograms,
    b: GroupHistograms,
    labels: tuple[str, str],
    endpoints: list[str] | None = None,
    limit: int = 6,
    title: str = "Latency distribution by endpoint: A vs B (CDF)",
) -> Figure:
    """One panel per endpoint (the busiest `limit` of both runs) with both runs' latency CDFs."""
    if endpoints is None:
        totals = pd.Series({e: 0 for e in set(a.labels) | set(b.labels)}, dtype=float)
        for h in (a, b):
            for g, e in enumerate(h.labels):
                totals[e] += h.total(g)
        endpoints = list(totals.sort_values(ascending=False, kind="stable").index[:limit])
    cols = 2 if len(endpoints) > 1 else 1
    rows = max(int(np.ceil(len(endpoints) / cols)), 1)
    fig, axes = new_figure(title, size=(10.0, 2.9 * rows + 1.0), rows=rows, cols=cols, sharex=False)
    for ax, endpoint in zip(axes, endpoints):
        for i, h in enumerate((a, b)):
            if endpoint in h.labels and h.total(h.labels.index(endpoint)):
                g = h.labels.index(endpoint)
                x, y = h.cdf(g)
                ax.step(
                    np.maximum(x, h.spec.lo),
                    y,
                    where="post",
                    linewidth=1.3,
                    label=labels[i],
                    **STYLE[i],
                )
        if ax.lines:
            log_x(ax)
        else:
            no_data(ax, "no requests in either run")
        sizes = ", ".join(
            f"{'AB'[i]} n={h.total(h.labels.index(endpoint)):,}" for i, h in enumerate((a, b)) if endpoint in h.labels
        )
        ax.set_title(f"{endpoint} ({sizes})" if sizes else endpoint, fontsize=9)
        ax.set_xlabel("latency (ms), log scale")
        ax.set_ylabel("share at or below")
        ax.set_ylim(0, 1.02)
    for ax in axes[len(endpoints) :]:
        ax.set_visible(False)
    # One legend above the panels: the runs are the same in every panel (their sizes are in the titles).
    handles = [Line2D([], [], linewidth=1.3, color=STYLE[i]["color"], linestyle=("-", "--")[i]) for i in (0, 1)]
    fig.legend(handles=handles, labels=list(labels), loc="outside upper center", ncols=2, fontsize=8)
    return fig
