"""Figures of a run's metrics (matplotlib): each function takes metric tables and returns a Figure.

Figures are built on `matplotlib.figure.Figure` directly, not through pyplot, so they need
no backend (PNG rendering uses Agg), leave no global state behind, and still display in a
notebook. Each has a title, axis labels with units and a legend, and the same title is used
as the image's alt text in the HTML pages. `png(fig)` and `data_uri(fig)` render one.

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
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="endpoint", title_fontsize=8)
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("requests / s (1 s bins)")
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
    styles = {
        "p50": ("tab:blue", "-"),
        "p90": ("tab:cyan", "-"),
        "p95": ("tab:orange", "-"),
        "p99": ("tab:red", "-"),
        "p99_9": ("tab:purple", "-"),
        "max": ("0.5", ":"),
    }
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
        ax.legend(loc="upper right", fontsize=8, title="percentile", title_fontsize=8)
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
        ax.legend(loc="lower right", fontsize=8, title="endpoint", title_fontsize=8)
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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="state", title_fontsize=8)
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("tasks")
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
    fig, axes = new_figure(title, size=(10.0, 4.0), cols=2, sharex=False)
    stages = (
        ("deliver_ms", "enqueued -> first delivered (waits for a poll)"),
        ("ack_ms", "delivered -> acknowledged (agent's work)"),
    )
    for ax, (column, label) in zip(axes, stages):
        for name, group in latency.groupby("command_name", sort=True):
            _ecdf(ax, group[column].to_numpy(dtype=np.float64), str(name))
        if ax.lines:
            log_x(ax)
            ax.legend(loc="lower right", fontsize=8, title="command", title_fontsize=8)
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
    ax.legend(loc="upper left", fontsize=8, title="percentile per 1 s", title_fontsize=8)
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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="process", title_fontsize=8)
    axes[-1].set_xlabel(TIME_LABEL)
    return fig


def titles(figures: Sequence[Figure]) -> list[str]:
    """The titles of several figures (for tests and tables of contents)."""
    return [title_of(f) for f in figures]


# -- overlays of two runs (compare): A solid blue, B dashed orange -------------------------------

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
    ax.legend(loc="upper right", fontsize=8, title="run", title_fontsize=8)
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
            ax.legend(loc="upper right", fontsize=8, title="run", title_fontsize=8)
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
    fig, axes = new_figure(title, size=(10.0, 2.9 * rows + 0.6), rows=rows, cols=cols, sharex=False)
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
                    label=f"{labels[i]} (n={h.total(g):,})",
                    **STYLE[i],
                )
        if ax.lines:
            log_x(ax)
            ax.legend(loc="lower right", fontsize=7)
        else:
            no_data(ax, "no requests in either run")
        ax.set_title(endpoint, fontsize=9)
        ax.set_xlabel("latency (ms), log scale")
        ax.set_ylabel("share at or below")
        ax.set_ylim(0, 1.02)
    for ax in axes[len(endpoints) :]:
        ax.set_visible(False)
    return fig
