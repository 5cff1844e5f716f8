"""The server's own view of a load test (`server.parquet`, scraped from its /metrics) beside the client's.

`server_series` turns the scraped samples (cumulative counters, histogram sums and counts,
gauges; columns in `loadtests.scrape`) into one row per scrape interval: requests per second
as the server counted them (all, and those it answered with 4xx/5xx), its mean time per
request, its mean store transaction time, requests in flight and commands pending.
`server_figure` draws those beside what the load generator measured from outside (requests
per second sent and the mean latency it saw), so a gap between the two views shows: a
server counting fewer requests than the agents sent, or latency that the server's handler
time does not explain (queueing in front of the app, the network, the generator itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from sim.report.figures import TIME_LABEL, new_figure, no_data

SERVER_FILE = "server.parquet"
_REQUESTS = "smsload_server_requests_total"


def load_server_metrics(path: Path) -> pd.DataFrame | None:
    """The scraped samples of a run directory, or None when it has no `server.parquet`."""
    file = Path(path) / SERVER_FILE
    return pq.read_table(file).to_pandas() if file.is_file() else None


def _total(samples: pd.DataFrame, metric: str, mask: pd.Series | None = None) -> pd.Series:
    rows = samples[samples["metric"] == metric]
    if mask is not None:
        rows = rows[mask.loc[rows.index]]
    return rows.groupby("t_s")["value"].sum()


def server_series(samples: pd.DataFrame) -> pd.DataFrame:
    """Per scrape interval (t_s = its end): req_per_s, error_per_s, handler_ms, store_ms, in_flight, pending.

    Rates are differences of cumulative counters over the time between scrapes; a counter that
    went down (the server restarted) gives NaN for that interval rather than a negative rate.
    """
    times = pd.Index(np.sort(samples["t_s"].unique()), name="t_s")
    status = pd.to_numeric(samples["status"], errors="coerce")
    frame = pd.DataFrame(index=times)
    frame["requests"] = _total(samples, _REQUESTS)
    frame["errors"] = _total(samples, _REQUESTS, status >= 400)
    frame["handler_s"] = _total(samples, "smsload_server_request_seconds_sum")
    frame["handled"] = _total(samples, "smsload_server_request_seconds_count")
    frame["store_s"] = _total(samples, "smsload_server_store_seconds_sum")
    frame["stored"] = _total(samples, "smsload_server_store_seconds_count")
    frame["in_flight"] = _total(samples, "smsload_server_in_flight")
    frame["pending"] = _total(samples, "smsload_server_pending_commands")
    frame = frame.fillna({"errors": 0.0})
    step = frame.diff()
    dt = pd.Series(times, index=times).diff()
    falling = (step[["requests", "handled", "stored"]] < 0).any(axis=1)
    step[falling] = np.nan
    out = pd.DataFrame(
        {
            "req_per_s": step["requests"] / dt,
            "error_per_s": step["errors"] / dt,
            "handler_ms": step["handler_s"] / step["handled"].replace(0, np.nan) * 1000.0,
            "store_ms": step["store_s"] / step["stored"].replace(0, np.nan) * 1000.0,
            "in_flight": frame["in_flight"],
            "pending": frame["pending"],
        },
        index=times,
    )
    return out.iloc[1:].reset_index()


def client_series(requests: pd.DataFrame, bin_s: float = 1.0) -> pd.DataFrame:
    """What the generator saw per time bin: t_s (bin end), req_per_s sent, mean latency_ms."""
    if requests.empty:
        return pd.DataFrame({"t_s": [], "req_per_s": [], "latency_ms": []})
    end = requests["t_start_s"] + requests["latency_ms"].fillna(0) / 1000.0
    cell = np.floor(end / bin_s).astype(np.int64)
    grouped = requests.groupby(cell)["latency_ms"]
    return pd.DataFrame(
        {
            "t_s": (grouped.size().index.to_numpy() + 1) * bin_s,
            "req_per_s": grouped.size().to_numpy() / bin_s,
            "latency_ms": grouped.mean().to_numpy(),
        }
    )


def server_figure(server: pd.DataFrame, client: pd.DataFrame) -> Figure:
    """Three panels over time: requests/s (server counted vs client sent), mean time per request
    (server handler and store vs client latency), and the server's queue (in flight, pending commands)."""
    fig, axes = new_figure("The server's view (its /metrics) beside the load generator's", rows=3, size=(10.0, 8.0))
    rate, time_ax, queue = axes
    if server.empty:
        for ax in axes:
            no_data(ax, "no server metrics")
        return fig
    rate.plot(client["t_s"], client["req_per_s"], drawstyle="steps-pre", label="client: responses received", lw=1.2)
    rate.plot(server["t_s"], server["req_per_s"], drawstyle="steps-pre", label="server: requests counted", lw=1.2)
    if server["error_per_s"].fillna(0).any():
        rate.plot(server["t_s"], server["error_per_s"], drawstyle="steps-pre", label="server: 4xx/5xx", lw=1.0)
    rate.set_ylabel("requests / s")
    rate.legend(loc="upper left", fontsize=8)
    time_ax.plot(client["t_s"], client["latency_ms"], label="client: mean latency", lw=1.2)
    time_ax.plot(server["t_s"], server["handler_ms"], label="server: mean time in the app", lw=1.2)
    time_ax.plot(server["t_s"], server["store_ms"], label="server: mean store transaction", lw=1.0)
    time_ax.set_yscale("log")
    time_ax.set_ylabel("ms (mean per interval)")
    time_ax.legend(loc="upper left", fontsize=8)
    queue.plot(server["t_s"], server["in_flight"], drawstyle="steps-pre", label="requests in flight", lw=1.2)
    queue.plot(server["t_s"], server["pending"], drawstyle="steps-pre", label="commands pending", lw=1.2)
    queue.set_ylabel("count at the scrape")
    queue.set_xlabel(TIME_LABEL)
    queue.legend(loc="upper left", fontsize=8)
    return fig
