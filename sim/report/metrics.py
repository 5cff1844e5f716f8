"""Request metrics of a run: per-endpoint tables with confidence intervals, and time series.

Every function takes the run's tables as DataFrames (`sim.records.load_run`) and returns a
DataFrame; none runs a model or reads a file. An endpoint is "METHOD /path/template" (POST
and GET /v3/sources are two endpoints); the `ALL` row, where present, counts every request.

Percentiles are exact order statistics (`sim.records.quantiles`, the definition summary.json
uses, so both show the same numbers); their 95 % intervals come from log-bucketed histograms
resampled by a multinomial bootstrap and centred on the exact value: see `sim.report.hist`
for the method and its resolution (1,000 resamples by default, seeded per group). Throughput
intervals are exact Poisson intervals and error-rate intervals Wilson intervals
(`sim.report.intervals`). Time series bin requests by the second they were sent
(`t_start_s`); latency in a bin is that of the requests sent in it.

Sized for 10^7 rows: the grouping is done on integer codes, exact quantiles by one sort per
group and the resamples on histogram counts, so memory stays a small multiple of the input
columns.

Task and command metrics (tasks by state over time, lifecycle durations, command-dispatch
latency) live in `sim.report.tasks` and are re-exported here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.records.quantiles import QUANTILES, grouped_quantiles
from sim.report.hist import DEFAULT_BINS, LEVEL, N_BOOT, GroupHistograms, LogBins, group_histograms, quantile_frame
from sim.report.intervals import poisson_interval, wilson_interval
from sim.report.tasks import (
    STATE_ORDER,
    dispatch_latency,
    dispatch_table,
    lifecycle_table,
    state_intervals,
    tasks_by_state,
)

__all__ = [
    "ALL",
    "QUANTILES",
    "STATE_ORDER",
    "endpoint_codes",
    "endpoint_histograms",
    "endpoint_table",
    "value_table",
    "errors_by_status",
    "throughput_over_time",
    "percentiles_over_time",
    "generator_lag",
    "generator_saturation",
    "dispatch_latency",
    "dispatch_table",
    "lifecycle_table",
    "state_intervals",
    "tasks_by_state",
]

ALL = "ALL"  # the label of the row or series that counts every request


def _sorted_codes(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """(code of each value, the values in sorted order), the same for a categorical column (whose
    categories keep the order they were met in) as for plain strings."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.cat.remove_unused_categories()
        column = column.cat.reorder_categories(sorted(column.cat.categories))
        return column.cat.codes.to_numpy(), column.cat.categories
    return pd.factorize(column, sort=True)


def endpoint_codes(requests: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """(code of each row's endpoint, endpoint labels "METHOD /template" sorted): codes index the labels."""
    if requests.empty:
        return np.empty(0, np.int64), []
    m_codes, methods = _sorted_codes(requests["method"])
    e_codes, templates = _sorted_codes(requests["endpoint"])
    pair = m_codes.astype(np.int64) * len(templates) + e_codes
    # Only the pairs that occur become labels; a lookup table maps pair -> label index.
    present = np.flatnonzero(np.bincount(pair, minlength=len(methods) * len(templates)))
    labels = [f"{methods[p // len(templates)]} {templates[p % len(templates)]}" for p in present]
    lookup = np.full(len(methods) * len(templates), -1, np.int64)
    lookup[present] = np.arange(len(present))
    return lookup[pair], labels


def endpoint_histograms(
    requests: pd.DataFrame,
    column: str = "latency_ms",
    spec: LogBins = DEFAULT_BINS,
    codes: tuple[np.ndarray, list[str]] | None = None,
) -> GroupHistograms:
    """Histograms of `column` per endpoint (rows where it is null are left out)."""
    code, labels = codes or endpoint_codes(requests)
    return group_histograms(requests[column].to_numpy(dtype=np.float64, na_value=np.nan), code, labels, spec)


def value_table(
    requests: pd.DataFrame,
    column: str = "latency_ms",
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    total: bool = True,
    codes: tuple[np.ndarray, list[str]] | None = None,
) -> pd.DataFrame:
    """Per endpoint (index): count of non-null values and p50 .. max of `column` with NAME_lo/NAME_hi bounds.

    Use it for `queue_wait_ms` (simulation) or `server_ms`; it is empty when the column is all null.
    """
    code, labels = codes or endpoint_codes(requests)
    values = requests[column].to_numpy(dtype=np.float64, na_value=np.nan)
    table = quantile_frame(values, code, labels, total=ALL if total else None, n_boot=n_boot, seed=seed, level=level)
    table.index.name = "endpoint"
    return table[table["count"] > 0]


def endpoint_table(
    requests: pd.DataFrame,
    duration_s: float,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    total: bool = True,
) -> pd.DataFrame:
    """The run's headline table, one row per endpoint (index "METHOD /template"), plus `ALL` if `total`.

    Columns: method, template, count, throughput_per_s (+ _lo/_hi, Poisson), errors, error_rate
    (+ _lo/_hi, Wilson), then p50, p90, p95, p99, p99_9 and max latency in ms, each with NAME_lo and
    NAME_hi (bootstrap). Error = a row whose `ok` is false (HTTP status outside 2xx, or no answer).
    """
    codes = endpoint_codes(requests)
    code, labels = codes
    latency = value_table(requests, "latency_ms", n_boot=n_boot, seed=seed, level=level, total=total, codes=codes)
    count = np.bincount(code, minlength=len(labels)).astype(np.int64)
    errors = np.bincount(code, weights=~requests["ok"].to_numpy(dtype=bool), minlength=len(labels)).astype(np.int64)
    names = list(labels)
    if total and labels:
        names, count, errors = [*names, ALL], np.append(count, count.sum()), np.append(errors, errors.sum())
    table = pd.DataFrame({"count": count, "errors": errors}, index=pd.Index(names, name="endpoint"))
    split = [n.split(" ", 1) if n != ALL else ["", ALL] for n in names]
    table.insert(0, "method", [s[0] for s in split])
    table.insert(1, "template", [s[1] for s in split])
    lo, hi = poisson_interval(count, level)
    table["throughput_per_s"] = count / duration_s
    table["throughput_lo"], table["throughput_hi"] = lo / duration_s, hi / duration_s
    with np.errstate(invalid="ignore", divide="ignore"):
        table["error_rate"] = errors / count
    table["error_rate_lo"], table["error_rate_hi"] = wilson_interval(errors, count, level)
    quantile_cols = latency.drop(columns="count")
    return table.join(quantile_cols, how="left")


def errors_by_status(requests: pd.DataFrame) -> pd.DataFrame:
    """Failed requests per endpoint, status and error code: endpoint, status, error, count, share (of
    the endpoint's requests)."""
    columns = ["endpoint", "status", "error", "count", "share"]
    code, labels = endpoint_codes(requests)
    bad = ~requests["ok"].to_numpy(dtype=bool)
    if not bad.any():
        return pd.DataFrame(columns=columns)
    per_endpoint = np.bincount(code, minlength=len(labels))
    failed = pd.DataFrame(
        {
            "endpoint": np.asarray(labels, dtype=object)[code[bad]],
            "status": requests["status"].to_numpy()[bad],
            "error": requests["error"].iloc[np.flatnonzero(bad)].to_numpy(dtype=object),
        }
    )
    out = failed.groupby(["endpoint", "status", "error"], sort=False, dropna=False).size().rename("count").reset_index()
    out["share"] = out["count"] / per_endpoint[[labels.index(e) for e in out["endpoint"]]]
    return out.sort_values(["count", "endpoint"], ascending=[False, True], ignore_index=True)[columns]


def _time_cells(t: np.ndarray, duration_s: float | None, bin_s: float) -> tuple[np.ndarray, int, np.ndarray]:
    """(bin of each time, number of bins, width of each bin).

    Only whole bins: a partial last bin (a 10.4 s run's [10, 10.4)) is dropped, since its few
    requests would show as a dip in throughput and a spike or gap in percentiles; its requests
    still count in every table. A run shorter than one bin keeps its one, partial, bin. A time
    outside the bins gets a bin index of -1 or n (callers drop it).
    """
    end = float(duration_s) if duration_s else (float(np.nanmax(t)) if t.size else 0.0)
    whole = int(np.floor(end / bin_s + 1e-9))
    n = max(whole, 1)
    cells = np.floor(t / bin_s).astype(np.int64)
    # A request at exactly the end of the last whole bin (a 10 s run's t = 10) belongs to it.
    cells = np.where((cells == n) & (t <= n * bin_s + 1e-9), n - 1, cells)
    width = bin_s if whole >= 1 or end <= 0 else end
    return cells, n, np.full(n, width)


def throughput_over_time(
    requests: pd.DataFrame, duration_s: float | None = None, *, bin_s: float = 1.0, by_endpoint: bool = True
) -> pd.DataFrame:
    """Requests sent per time bin: t_s (bin start), endpoint (or `ALL`), requests, errors, per_s, error_rate.

    Every whole bin from 0 to `duration_s` is present, zeros included (a gap in the traffic
    shows); a partial last bin is left out (see `_time_cells`). `error_rate` is errors /
    requests (NaN in a bin without requests).
    """
    t = requests["t_start_s"].to_numpy(dtype=np.float64)
    cells, n, widths = _time_cells(t, duration_s, bin_s)
    code, labels = endpoint_codes(requests) if by_endpoint else (np.zeros(len(t), np.int64), [ALL])
    keep = (cells >= 0) & (cells < n)
    flat = code[keep] * n + cells[keep]
    size = len(labels) * n
    count = np.bincount(flat, minlength=size)
    errors = np.bincount(flat, weights=~requests["ok"].to_numpy(dtype=bool)[keep], minlength=size).astype(np.int64)
    return pd.DataFrame(
        {
            "t_s": np.tile(np.arange(n) * bin_s, len(labels)),
            "endpoint": np.repeat(np.asarray(labels, dtype=object), n),
            "requests": count,
            "errors": errors,
            "per_s": count / np.tile(widths, len(labels)),
            "error_rate": np.divide(errors, count, out=np.full(size, np.nan), where=count > 0),
        }
    )


def _series(
    t: np.ndarray,
    values: np.ndarray,
    codes: np.ndarray,
    labels: list[str],
    duration_s: float | None,
    bin_s: float,
    names: tuple[str, ...],
) -> pd.DataFrame:
    cells, n, _ = _time_cells(t, duration_s, bin_s)
    probs = np.array([QUANTILES[name] for name in names])
    flat = np.where((cells >= 0) & (cells < n), codes * n + cells, -1)  # -1: outside the run, dropped
    counts, q = grouped_quantiles(values, flat, len(labels) * n, probs)
    return series_frame(labels, n, bin_s, counts, q, names)


def series_frame(
    labels: list[str], n: int, bin_s: float, counts: np.ndarray, q: np.ndarray, names: tuple[str, ...]
) -> pd.DataFrame:
    """A series table: t_s, endpoint, count, one column per quantile name, for `n` bins of each label
    (`counts` and the rows of `q` label-major); row runs and histogram runs build it alike."""
    out = pd.DataFrame(
        {
            "t_s": np.tile(np.arange(n) * bin_s, len(labels)),
            "endpoint": np.repeat(np.asarray(labels, dtype=object), n),
            "count": counts,
        }
    )
    for i, name in enumerate(names):
        out[name] = q[:, i]
    return out


def percentiles_over_time(
    requests: pd.DataFrame,
    column: str = "latency_ms",
    duration_s: float | None = None,
    *,
    bin_s: float = 1.0,
    names: tuple[str, ...] = ("p50", "p95", "p99", "max"),
    by_endpoint: bool = False,
) -> pd.DataFrame:
    """Percentiles of `column` per time bin: t_s, endpoint (or `ALL`), count, then one column per name
    (NaN when empty). Whole bins only (see `_time_cells`); `by_endpoint` gives one series per endpoint."""
    t = requests["t_start_s"].to_numpy(dtype=np.float64)
    values = requests[column].to_numpy(dtype=np.float64, na_value=np.nan)
    code, labels = endpoint_codes(requests) if by_endpoint else (np.zeros(len(t), np.int64), [ALL])
    return _series(t, values, code, labels, duration_s, bin_s, names)


def generator_lag(
    requests: pd.DataFrame,
    duration_s: float | None = None,
    *,
    bin_s: float = 1.0,
    names: tuple[str, ...] = ("p50", "p95", "p99", "max"),
) -> pd.DataFrame:
    """The load generator's lag `t_start_s - t_sched_s` in ms per time bin: t_s, endpoint (`ALL`), count, percentiles.

    When the lag grows, requests leave later than the model meant to send them: the generator,
    not the server, is the bottleneck. A simulation sends on time (lag 0).
    """
    t = requests["t_start_s"].to_numpy(dtype=np.float64)
    lag = (t - requests["t_sched_s"].to_numpy(dtype=np.float64)) * 1000.0
    return _series(t, np.maximum(lag, 0.0), np.zeros(len(t), np.int64), [ALL], duration_s, bin_s, names)


def generator_saturation(
    lag: pd.DataFrame,
    generator: pd.DataFrame | None = None,
    *,
    growth_ms: float = 100.0,
    cpu_percent: float = 90.0,
    cpu_share: float = 0.1,
) -> list[str]:
    """Why the load generator looks saturated (an empty list when it does not).

    - lag growing: the median of the per-second p95 lag over the last quarter of the run exceeds
      that of the first quarter by more than `growth_ms` (a saturated generator falls further
      behind over time; a constant offset is not saturation);
    - CPU: a generator process above `cpu_percent` of a core in at least `cpu_share` of its
      samples (Locust runs each process on one core, so ~100 % means it is out of CPU).

    `lag` is `generator_lag(...)`; `generator` the run's generator.parquet (load tests), or None.
    """
    reasons = []
    series = lag.loc[lag["count"] > 0, ["t_s", "p95"]].dropna()
    if len(series) >= 8:
        quarter = max(len(series) // 4, 2)
        first, last = series["p95"].iloc[:quarter].median(), series["p95"].iloc[-quarter:].median()
        if last - first > growth_ms:
            reasons.append(
                f"generator lag grew from {first:.0f} ms to {last:.0f} ms (p95 per second, "
                f"first vs last quarter of the run): the load generator fell behind its schedule"
            )
    if generator is not None and not generator.empty:
        for process, samples in generator.groupby("process", sort=True):
            busy = float((samples["cpu_percent"] > cpu_percent).mean())
            if busy >= cpu_share:
                reasons.append(
                    f"generator process {process} was above {cpu_percent:.0f}% CPU in {busy:.0%} of its "
                    f"samples (max {samples['cpu_percent'].max():.0f}%)"
                )
    return reasons
