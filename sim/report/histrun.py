"""Request metrics of a histogram run: the tables of `sim.report.metrics`, read off latency_hist.parquet.

A run of the compiled polling engine has no request rows; it counts requests per endpoint,
outcome, time bin and log latency bucket (`sim.records.hist`). Every function here returns
the same columns as its row twin in `sim.report.metrics`, so the pages, comparisons and
notebooks take either kind of run:

- counts, throughput, errors and error rates are exact (the histograms count every request);
- a latency quantile is the midpoint of the bucket holding the order statistic at the exact
  quantile's position (`sim.records.quantiles.positions`), the number summary.json shows,
  within the bins' relative error (`LogBins.rel_error`, 0.5 % by default) of the exact one;
- its 95 % interval is the histogram bootstrap of `sim.report.hist` run on the run's own
  counts (the bootstrap already works on counts; no rows are needed);
- time series use the histograms' time bins (`bin_s`), by the time requests were sent.

What needs rows cannot be drawn: the load generator's lag, anything per agent, queue wait and
server time. `hist_analysis` gives those as the empty tables a run without them has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.records import QUANTILES, Run, positions
from sim.records.hist import LogBins
from sim.report import metrics as M
from sim.report.hist import LEVEL, N_BOOT, GroupHistograms, bootstrap, combine, hist_quantiles, interval
from sim.report.intervals import poisson_interval, wilson_interval


def _labels(hist: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """(code of each row's endpoint, labels "METHOD /template" sorted), as `metrics.endpoint_codes`."""
    return M.endpoint_codes(hist)


def endpoint_histograms(hist: pd.DataFrame, bins: LogBins) -> GroupHistograms:
    """Latency histograms per endpoint, summed over outcomes and time bins."""
    code, labels = _labels(hist)
    flat = code * bins.n + hist["bucket"].to_numpy(dtype=np.int64)
    cells = np.zeros(len(labels) * bins.n, np.int64)
    np.add.at(cells, flat, hist["count"].to_numpy(dtype=np.int64))
    dense = cells.reshape(len(labels), bins.n)
    kept = [np.flatnonzero(row) for row in dense]
    return GroupHistograms(list(labels), kept, [dense[g, b] for g, b in enumerate(kept)], bins)


def _errors(hist: pd.DataFrame) -> np.ndarray:
    return np.where(hist["ok"].to_numpy(dtype=bool), 0, hist["count"].to_numpy(dtype=np.int64))


def endpoint_table(
    hist: pd.DataFrame,
    bins: LogBins,
    duration_s: float,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    total: bool = True,
) -> pd.DataFrame:
    """`metrics.endpoint_table` of a histogram run: the same columns, quantiles read off the histograms."""
    code, labels = _labels(hist)
    h = endpoint_histograms(hist, bins)
    counts = np.bincount(code, weights=hist["count"].to_numpy(dtype=np.float64), minlength=len(labels))
    errors = np.bincount(code, weights=_errors(hist).astype(np.float64), minlength=len(labels))
    count, errs = counts.round().astype(np.int64), errors.round().astype(np.int64)
    groups: list[tuple[GroupHistograms, int]] = [(h, g) for g in range(len(labels))]
    names = list(labels)
    if total and labels:
        names, count, errs = [*names, M.ALL], np.append(count, count.sum()), np.append(errs, errs.sum())
        groups.append((combine(h, M.ALL), 0))
    probs = np.array(list(QUANTILES.values()))
    rows = []
    for hg, g in groups:
        point = hist_quantiles(hg, g, probs)
        lo, hi = point, point
        if n_boot:
            lo, hi = interval(bootstrap(hg, g, probs, n_boot, seed), level)
            lo, hi = np.fmin(lo, point), np.fmax(hi, point)
        rows.append([v for i in range(len(probs)) for v in (point[i], lo[i], hi[i])])
    quantile_cols = [f"{n}{s}" for n in QUANTILES for s in ("", "_lo", "_hi")]
    table = pd.DataFrame({"count": count, "errors": errs}, index=pd.Index(names, name="endpoint"))
    split = [n.split(" ", 1) if n != M.ALL else ["", M.ALL] for n in names]
    table.insert(0, "method", [s[0] for s in split])
    table.insert(1, "template", [s[1] for s in split])
    lo, hi = poisson_interval(count, level)
    table["throughput_per_s"] = count / duration_s
    table["throughput_lo"], table["throughput_hi"] = lo / duration_s, hi / duration_s
    with np.errstate(invalid="ignore", divide="ignore"):
        table["error_rate"] = errs / count
    table["error_rate_lo"], table["error_rate_hi"] = wilson_interval(errs, count, level)
    return table.join(pd.DataFrame(rows, columns=quantile_cols, index=table.index))


def errors_by_status(hist: pd.DataFrame) -> pd.DataFrame:
    """`metrics.errors_by_status` of a histogram run: endpoint, status, error, count, share."""
    columns = ["endpoint", "status", "error", "count", "share"]
    bad = ~hist["ok"].to_numpy(dtype=bool)
    if not bad.any():
        return pd.DataFrame(columns=columns)
    label = hist["method"].astype(str) + " " + hist["endpoint"].astype(str)
    per_endpoint = hist.groupby(label, sort=False)["count"].sum()
    failed = hist.loc[bad, ["status", "error", "count"]].assign(endpoint=label[bad])
    out = failed.groupby(["endpoint", "status", "error"], sort=False, dropna=False)["count"].sum().reset_index()
    out["share"] = out["count"].to_numpy() / per_endpoint.loc[out["endpoint"]].to_numpy()
    return out.sort_values(["count", "endpoint"], ascending=[False, True], ignore_index=True)[columns]


def _cells(hist: pd.DataFrame, duration_s: float | None) -> tuple[np.ndarray, int, float, np.ndarray]:
    """(time bin of each row, -1 outside the run; number of bins, bin_s, width of each bin: the last may be partial)."""
    bin_s = float(hist["bin_s"].iloc[0]) if len(hist) else 1.0
    t = hist["t_bin_s"].to_numpy(dtype=np.float64)
    end = float(duration_s) if duration_s else (float(t.max()) + bin_s if t.size else 0.0)
    n = max(int(np.ceil(end / bin_s - 1e-9)), 1)
    cells = np.round(t / bin_s).astype(np.int64)
    # As metrics._time_cells: a request at exactly the end belongs to the last bin; later ones are left out.
    cells = np.where(cells == n, n - 1, cells)
    cells = np.where((cells >= 0) & (cells < n), cells, -1)
    widths = np.minimum(bin_s, end - np.arange(n) * bin_s) if end > 0 else np.full(n, bin_s)
    return cells, n, bin_s, np.where(widths > 0, widths, bin_s)


def throughput_over_time(
    hist: pd.DataFrame, duration_s: float | None = None, *, by_endpoint: bool = True
) -> pd.DataFrame:
    """`metrics.throughput_over_time` of a histogram run (its own `bin_s`): t_s, endpoint, requests, errors, per_s."""
    cells, n, bin_s, widths = _cells(hist, duration_s)
    code, labels = _labels(hist) if by_endpoint else (np.zeros(len(hist), np.int64), [M.ALL])
    keep, size = cells >= 0, len(labels) * n
    flat = (code * n + cells)[keep]
    weights = hist["count"].to_numpy(dtype=np.float64)[keep]
    count = np.bincount(flat, weights=weights, minlength=size).round()
    errors = np.bincount(flat, weights=_errors(hist).astype(np.float64)[keep], minlength=size).round()
    return pd.DataFrame(
        {
            "t_s": np.tile(np.arange(n) * bin_s, len(labels)),
            "endpoint": np.repeat(np.asarray(labels, dtype=object), n),
            "requests": count.astype(np.int64),
            "errors": errors.astype(np.int64),
            "per_s": count / np.tile(widths, len(labels)),
        }
    )


def grouped_hist_quantiles(
    groups: np.ndarray, buckets: np.ndarray, counts: np.ndarray, n_groups: int, bins: LogBins, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles per group of histogram rows: (counts (n_groups,), quantiles (n_groups, len(probs))), NaN if empty.

    One pass for any number of groups (endpoints x time bins): cells are summed and sorted by
    (group, bucket), and each group's order statistic is found in the cumulative counts of all.
    """
    frame = pd.DataFrame({"g": groups, "b": buckets, "c": counts}).groupby(["g", "b"], sort=True)["c"].sum()
    frame = frame[frame > 0]
    g = frame.index.get_level_values("g").to_numpy(dtype=np.int64)
    b = frame.index.get_level_values("b").to_numpy(dtype=np.int64)
    c = frame.to_numpy(dtype=np.int64)
    totals = np.bincount(g, weights=c.astype(np.float64), minlength=n_groups).round().astype(np.int64)
    out = np.full((n_groups, len(probs)), np.nan)
    filled = np.flatnonzero(totals)
    if filled.size:
        cum = np.cumsum(c)
        before = np.concatenate([[0], np.cumsum(totals)])[:-1]  # counts of the groups before each group
        ranks = before[filled, None] + positions(totals[filled], probs) + 1
        out[filled] = bins.value(b[np.searchsorted(cum, ranks, side="left")])
    return totals, out


def percentiles_over_time(
    hist: pd.DataFrame,
    bins: LogBins,
    duration_s: float | None = None,
    *,
    names: tuple[str, ...] = ("p50", "p95", "p99", "max"),
    by_endpoint: bool = False,
) -> pd.DataFrame:
    """`metrics.percentiles_over_time` of a histogram run: t_s, endpoint (or `ALL`), count, one column per name."""
    cells, n, bin_s, _ = _cells(hist, duration_s)
    code, labels = _labels(hist) if by_endpoint else (np.zeros(len(hist), np.int64), [M.ALL])
    probs = np.array([QUANTILES[name] for name in names])
    keep = cells >= 0
    counts, q = grouped_hist_quantiles(
        (code * n + cells)[keep],
        hist["bucket"].to_numpy()[keep],
        hist["count"].to_numpy()[keep],
        len(labels) * n,
        bins,
        probs,
    )
    return M.series_frame(list(labels), n, bin_s, counts, q, names)


def hist_note(bins: LogBins) -> str:
    """What the page says about where a histogram run's latencies come from."""
    return (
        f"Latencies come from histograms (latency_hist.parquet), not request rows: log buckets "
        f"{bins.rel_width:.0%} wide, so every latency percentile is a bucket's midpoint, within "
        f"{bins.rel_error:.2%} (relative error) of the exact value; counts, throughput and error rates are exact."
    )


def hist_analysis(run: Run, duration_s: float, *, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, Any]:
    """The tables of a `RunAnalysis` (all but run, duration_s, seed, generator) of a histogram run."""
    bins = run.latency_bins
    if bins is None:
        raise ValueError(f"{run.path}: not a histogram run (no latency_hist.parquet)")
    hist, req = run.histograms, run.requests  # req: empty; kept so the row-only tables have their columns
    return {
        "endpoints": endpoint_table(hist, bins, duration_s, n_boot=n_boot, seed=seed),
        "errors": errors_by_status(hist),
        "latency_hist": endpoint_histograms(hist, bins),
        "throughput": throughput_over_time(hist, duration_s),
        "latency": percentiles_over_time(hist, bins, duration_s),
        "latency_by_endpoint": percentiles_over_time(hist, bins, duration_s, by_endpoint=True),
        "queue_wait": M.value_table(req.iloc[:0], "queue_wait_ms", n_boot=n_boot, seed=seed),
        "queue_wait_series": M.percentiles_over_time(req.iloc[:0], "queue_wait_ms", duration_s),
        "server_time": M.value_table(req.iloc[:0], "server_ms", n_boot=n_boot, seed=seed),
        "lag": M.generator_lag(req.iloc[:0], duration_s),
        "tasks_by_state": M.tasks_by_state(run.tasks, duration_s),
        "lifecycle": M.lifecycle_table(run.tasks, n_boot=n_boot, seed=seed),
        "dispatch": M.dispatch_table(run.commands, n_boot=n_boot, seed=seed),
        "dispatch_latency": M.dispatch_latency(run.commands),
    }
