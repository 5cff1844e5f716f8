"""Figures of a run's metrics (matplotlib): each function takes metric tables and returns a Figure.

Figures are built on `matplotlib.figure.Figure` directly, not through pyplot, so they need
no backend (PNG rendering uses Agg), leave no global state behind, and still display in a
notebook. Each has a title, axis labels with units and a legend outside the plotting area
(beside it, or above small multiples), so it never hides a curve; the same title is used as
the image's alt text in the HTML pages. `png(fig)` and `data_uri(fig)` render one. Series
over time are in whole bins (`sim.report.metrics`: a partial last bin is not drawn).

Inputs are the tables of `sim.report.metrics`: e.g. `throughput_figure(throughput_over_time(
run.requests, duration_s))`. Overlays of two runs, for comparisons, are in
`sim.report.overlays`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, LogLocator, MaxNLocator, NullFormatter

from sim.report.hist import GroupHistograms

TIME_LABEL = "time since the run started (s)"
WIDE = (10.0, 4.2)
STATE_COLORS = {
    "READY": "tab:blue",
    "RUNNING": "tab:orange",
    "MIGRATE_SUCCESS": "tab:green",
    "MIGRATE_FAIL": "tab:red",
    "SYNCING": "tab:purple",
    "SYNC_SUCCESS": "yellowgreen",
    "SYNC_FAIL": "tab:pink",
    "ABORTING": "tab:brown",
    "ABORT": "tab:cyan",
    "DELETING": "0.35",
    "DELETED": "0.85",
}
MAX_LINES = 7  # more endpoints than this are lumped together as "other endpoints"
MAX_PANELS = 8  # small multiples: the busiest endpoints, one panel each
PERCENTILE_STYLES = {
    "p50": ("tab:blue", "-"),
    "p90": ("tab:cyan", "-"),
    "p95": ("tab:orange", "-"),
    "p99": ("tab:red", "-"),
    "p99_9": ("tab:purple", "-"),
    "max": ("0.5", ":"),
}


def legend_outside(ax: Axes, title: str, fontsize: int = 8) -> None:
    """The axes' legend to the right of the plotting area, where it hides no curve."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=fontsize, title=title, title_fontsize=fontsize)


def png(fig: Figure, dpi: int = 96) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def data_uri(fig: Figure, dpi: int = 96) -> str:
    """The figure as a `data:image/png;base64,...` URI, for a self-contained HTML page."""
    return "data:image/png;base64," + base64.b64encode(png(fig, dpi)).decode("ascii")


def title_of(fig: Figure) -> str:
    """The figure's title (suptitle, else the first axes' title): the alt text of its image."""
    return fig.get_suptitle() or (fig.axes[0].get_title() if fig.axes else "")


def new_figure(
    title: str, size: tuple[float, float] = WIDE, rows: int = 1, cols: int = 1, sharex: bool = True
) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=sharex, squeeze=False).ravel())
    fig.suptitle(title, fontsize=12, fontweight="bold")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def log_x(ax: Axes) -> None:
    """A log x axis labelled 0.1, 1, 10, 1,000 (no minor labels: they overlap on narrow panels)."""
    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    # Under two decades a 1-2-5 sequence, else powers of ten only.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if hi / max(lo, 1e-12) < 100 else (1.0,)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


class _PlainLog(LogFormatter):
    """Log-axis labels where matplotlib would put them, as plain numbers (2, 5, 10, not 2 x 10^0)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return (f"{x:,.0f}" if x >= 1 else f"{x:g}") if super().__call__(x, pos) else ""


def plain_y(ax: Axes) -> None:
    """Log y tick labels as plain numbers."""
    ax.yaxis.set_major_formatter(_PlainLog())
    ax.yaxis.set_minor_formatter(_PlainLog())


def _top(labels_by_weight: pd.Series, limit: int = MAX_LINES) -> list[str]:
    return list(labels_by_weight.sort_values(ascending=False, kind="stable").index[:limit])


def no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")


def throughput_figure(series: pd.DataFrame, title: str = "Throughput over time, by endpoint") -> Figure:
    """Stacked requests per second per endpoint, from `throughput_over_time(..., by_endpoint=True)`."""
    fig, (ax,) = new_figure(title)
    wide = series.pivot_table(index="t_s", columns="endpoint", values="per_s", aggfunc="sum", sort=True)
    if wide.empty or not wide.to_numpy().any():
        no_data(ax, "no requests")
    else:
        keep = _top(wide.sum())
        stacked = wide[keep].copy()
        if len(wide.columns) > len(keep):
            stacked["other endpoints"] = wide.drop(columns=keep).sum(axis=1)
        step = float(np.diff(stacked.index[:2])[0]) if len(stacked) > 1 else 1.0
        stacked.loc[stacked.index[-1] + step] = stacked.iloc[-1]  # so the last bin is drawn to its end
        ax.stackplot(stacked.index, stacked.to_numpy().T, labels=list(stacked.columns), step="post", alpha=0.85)
        legend_outside(ax, "endpoint")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("requests / s (1 s bins)")
    return fig


def error_rate_figure(series: pd.DataFrame, title: str = "Error rate over time") -> Figure:
    """Share of requests that failed per time bin, all requests and each endpoint that had errors.

    From `throughput_over_time(..., by_endpoint=True)` (its `requests` and `errors` columns).
    A bin without requests is a gap, not a zero.
    """
    fig, (ax,) = new_figure(title)
    if series.empty or not series["requests"].any():
        no_data(ax, "no requests")
    else:
        total = series.groupby("t_s", sort=True)[["requests", "errors"]].sum()
        rate = total["errors"] / total["requests"].where(total["requests"] > 0)
        ax.step(rate.index, rate.to_numpy() * 100, where="post", color="black", linewidth=1.6, label="all requests")
        failing = series[series["errors"] > 0].groupby("endpoint", sort=True)["errors"].sum()
        for endpoint in _top(failing):
            one = series[series["endpoint"] == endpoint].set_index("t_s").sort_index()
            share = one["errors"] / one["requests"].where(one["requests"] > 0)
            ax.step(share.index, share.to_numpy() * 100, where="post", linewidth=1.0, alpha=0.8, label=endpoint)
        ax.set_ylim(bottom=0)
        if not failing.any():
            ax.set_ylim(0, 1)
            no_data(ax, "no failed requests")
        legend_outside(ax, "requests")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("failed requests (% per 1 s bin)")
    return fig


def percentiles_figure(
    series: pd.DataFrame,
    title: str = "Latency percentiles over time (all requests)",
    ylabel: str = "latency (ms)",
    yscale: str = "log",
) -> Figure:
    """Percentile lines per time bin, from `percentiles_over_time` or `generator_lag` (one `endpoint`).

    `yscale` is "log", "linear" or "symlog" (log above 1, linear below: for values that are often 0).
    """
    fig, (ax,) = new_figure(title)
    styles = PERCENTILE_STYLES
    names = [c for c in styles if c in series.columns]
    shown = series[series["count"] > 0]
    if shown.empty:
        no_data(ax, "no values")
    for name in names if not shown.empty else []:
        color, line = styles[name]
        ax.plot(shown["t_s"], shown[name], color=color, linestyle=line, linewidth=1.2, label=name.replace("_", "."))
    if yscale == "symlog":
        ax.set_yscale("symlog", linthresh=1.0)
    elif yscale == "log" and not shown.empty and (shown[names].to_numpy() > 0).any():
        ax.set_yscale("log")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel(ylabel + " per 1 s bin")
    if not shown.empty:
        legend_outside(ax, "percentile")
    return fig


def endpoint_percentiles_figure(
    series: pd.DataFrame,
    title: str = "Latency percentiles over time, by endpoint",
    names: tuple[str, ...] = ("p50", "p95", "p99"),
    limit: int = MAX_PANELS,
) -> Figure:
    """Small multiples: one panel per endpoint (the busiest `limit`), its percentiles per time bin.

    From `percentiles_over_time(..., by_endpoint=True)`. Each panel has its own log y axis (a
    registration and a poll differ by orders of magnitude); one legend above the panels.
    """
    counts = series.groupby("endpoint", sort=True)["count"].sum()
    endpoints = [e for e in _top(counts, limit) if counts[e] > 0]
    cols = 2 if len(endpoints) > 1 else 1
    rows = max(int(np.ceil(len(endpoints) / cols)), 1)
    fig, axes = new_figure(title, size=(10.0, 2.4 * rows + 0.9), rows=rows, cols=cols)
    if not endpoints:
        no_data(axes[0], "no requests")
    for ax, endpoint in zip(axes, endpoints):
        # Every bin, empty ones as gaps: a line does not join two requests a minute apart, and a
        # marker shows a bin with requests on both sides empty (a registration burst at t = 0).
        one = series[series["endpoint"] == endpoint]
        for name in names:
            color, line = PERCENTILE_STYLES[name]
            ax.plot(
                one["t_s"],
                one[name].where(one["count"] > 0),
                color=color,
                linestyle=line,
                linewidth=1.1,
                marker=".",
                markersize=3,
                label=name.replace("_", "."),
            )
        if (one[list(names)].to_numpy() > 0).any():
            ax.set_yscale("log")
            plain_y(ax)
        ax.set_title(f"{endpoint} (n={int(counts[endpoint]):,})", fontsize=9)
        ax.set_ylabel("ms")
    for ax in axes[len(endpoints) :]:
        ax.set_visible(False)
    for ax in axes[max(len(endpoints) - cols, 0) : len(endpoints)]:
        ax.set_xlabel(TIME_LABEL)
        ax.xaxis.set_tick_params(labelbottom=True)
    if endpoints:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(
            handles, labels, loc="outside lower center", ncols=len(names), fontsize=8, title="percentile per 1 s bin"
        )
    return fig


def latency_cdf_figure(
    hist: GroupHistograms,
    title: str = "Latency distribution by endpoint (CDF)",
    xlabel: str = "latency (ms), log scale",
) -> Figure:
    """One cumulative distribution per endpoint (the busiest ones), from `endpoint_histograms`."""
    fig, (ax,) = new_figure(title)
    totals = pd.Series({label: hist.total(g) for g, label in enumerate(hist.labels)}, dtype=float)
    keep = [label for label in _top(totals) if totals[label] > 0]
    for label in keep:
        x, y = hist.cdf(hist.labels.index(label))
        x = np.maximum(x, hist.spec.lo)  # bin 0 (values below lo) is drawn at lo on a log axis
        ax.step(x, y, where="post", linewidth=1.3, label=f"{label} (n={int(totals[label]):,})")
    if keep:
        log_x(ax)
        legend_outside(ax, "endpoint")
    else:
        no_data(ax, "no requests")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of requests at or below")
    return fig


def tasks_by_state_figure(frame: pd.DataFrame, title: str = "Tasks by state over time") -> Figure:
    """Stacked number of tasks in each state, from `tasks_by_state` (DELETED, the tasks gone, on top in grey)."""
    fig, (ax,) = new_figure(title)
    if frame.empty or frame.shape[1] == 0:
        no_data(ax, "no task events in this run")
    else:
        spare = iter(["tab:gray", "gold", "teal", "navy", "salmon", "lime"])
        colors = [STATE_COLORS.get(state) or next(spare, "0.5") for state in frame.columns]
        ax.stackplot(frame.index, frame.to_numpy().T, labels=list(frame.columns), step="post", alpha=0.9, colors=colors)
        legend_outside(ax, "state")
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("tasks")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count of tasks: 2, 4, 6, never 2.5
    return fig


def _ecdf(ax: Axes, values: np.ndarray, label: str) -> None:
    v = np.sort(values[np.isfinite(values)])
    if v.size:
        ax.step(
            np.maximum(v, 1e-3),
            np.arange(1, v.size + 1) / v.size,
            where="post",
            linewidth=1.3,
            label=f"{label} (n={v.size:,})",
        )


def dispatch_figure(latency: pd.DataFrame, title: str = "Command dispatch latency, by command") -> Figure:
    """CDFs of enqueued -> first delivered and delivered -> acknowledged per command, from `dispatch_latency`."""
    fig, axes = new_figure(title, size=(10.0, 4.6), cols=2, sharex=False)
    stages = (
        ("deliver_ms", "enqueued -> first delivered (waits for a poll)"),
        ("ack_ms", "delivered -> acknowledged (agent's work)"),
    )
    for ax, (column, label) in zip(axes, stages):
        for name, group in latency.groupby("command_name", sort=True):
            _ecdf(ax, group[column].to_numpy(dtype=np.float64), str(name))
        if ax.lines:
            log_x(ax)
            # Below the panel: two panels side by side leave no room beside them.
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, ncols=2, title="command")
        else:
            no_data(ax, "no commands")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("ms, log scale")
        ax.set_ylabel("share of commands at or below")
        ax.set_ylim(0, 1.02)
    return fig


def generator_figure(
    lag: pd.DataFrame, generator: pd.DataFrame | None, title: str = "Load generator: lag behind schedule and CPU"
) -> Figure:
    """Lag percentiles per second (`generator_lag`) and, when sampled, CPU per generator process."""
    rows = 2 if generator is not None else 1
    fig, axes = new_figure(title, size=(10.0, 3.2 * rows + 0.6), rows=rows)
    ax = axes[0]
    shown = lag[lag["count"] > 0]
    for name, color in (("p50", "tab:blue"), ("p95", "tab:orange"), ("max", "0.5")):
        if name in shown.columns:
            ax.plot(shown["t_s"], shown[name], color=color, linewidth=1.2, label=name)
    ax.set_ylabel("t_start - t_sched (ms)")
    ax.set_title("lag: how late requests left compared with when the model meant to send them", fontsize=10)
    legend_outside(ax, "percentile per 1 s")
    if generator is not None:
        ax = axes[1]
        for process, samples in generator.groupby("process", sort=True):
            ax.plot(samples["t_s"], samples["cpu_percent"], linewidth=1.2, label=f"{process}")
        if "host_cpu_percent" in generator.columns and generator["host_cpu_percent"].notna().any():
            host = generator.groupby("t_s", sort=True)["host_cpu_percent"].mean()
            ax.plot(
                host.index,
                host.to_numpy(),
                color="0.6",
                linestyle="--",
                linewidth=1,
                label="whole machine (% of all cores)",
            )
        ax.axhline(90, color="tab:red", linestyle=":", linewidth=1, label="90% (saturated)")
        ax.set_ylabel("CPU (% of one core)")
        ax.set_title("generator CPU per process", fontsize=10)
        legend_outside(ax, "process")
    axes[-1].set_xlabel(TIME_LABEL)
    return fig


def titles(figures: Sequence[Figure]) -> list[str]:
    """The titles of several figures (for tests and tables of contents)."""
    return [title_of(f) for f in figures]
