"""summary.json of a histogram run: the figures of `sim.records.summary`, read off latency_hist.parquet.

Counts, throughput and error rates are exact (the histograms count every request). A latency
quantile is the midpoint of the bucket that holds the order statistic at the very position
`sim.records.quantiles.positions` gives for the exact quantile, so it is within the bins'
relative error (`LogBins.rel_error`) of the value a row run's summary would show; the mean is
the count-weighted mean of the midpoints, within the same error. A simulation has no load
generator, so `generator_lag_ms` is all null.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.records.hist import HIST_FILE, LogBins
from sim.records.quantiles import QUANTILES, positions
from sim.records.summary import dispatch_summary, stats, task_summary

_PROBS = np.array(list(QUANTILES.values()))


def bucket_counts(buckets: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct buckets, their summed counts, int64) of histogram rows."""
    b = np.asarray(buckets, dtype=np.int64)
    if b.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order, inverse = np.unique(b, return_inverse=True)
    total = np.zeros(len(order), np.int64)
    np.add.at(total, inverse.ravel(), np.asarray(counts, dtype=np.int64))
    keep = total > 0
    return order[keep], total[keep]


def hist_quantiles(buckets: np.ndarray, counts: np.ndarray, bins: LogBins, probs: np.ndarray) -> np.ndarray:
    """The `probs` quantiles of histogram rows (bucket midpoints), at the exact quantiles' positions; NaN if empty."""
    b, c = bucket_counts(buckets, counts)
    p = np.asarray(probs, dtype=np.float64)
    if c.size == 0:
        return np.full(p.shape, np.nan)
    cum = np.cumsum(c)
    ranks = positions(int(cum[-1]), p) + 1  # 1-based rank of each order statistic
    return bins.value(b[np.searchsorted(cum, ranks, side="left")])


def hist_stats(buckets: np.ndarray, counts: np.ndarray, bins: LogBins) -> dict[str, float | None]:
    """p50 .. p99_9 and max read off histogram rows, and the mean (rounded); None for no requests."""
    b, c = bucket_counts(buckets, counts)
    if c.size == 0:
        return stats(np.empty(0))
    q = hist_quantiles(b, c, bins, _PROBS)
    out: dict[str, float | None] = {k: float(v) for k, v in zip(QUANTILES, q)}
    out["mean"] = round(float(np.dot(bins.value(b), c) / c.sum()), 4)
    return out


def _figures(rows: pd.DataFrame, bins: LogBins, duration_s: float) -> dict[str, Any]:
    count = int(rows["count"].sum())
    errors = int(rows.loc[~rows["ok"].astype(bool), "count"].sum())
    return {
        "count": count,
        "throughput_per_s": round(count / duration_s, 4),
        "error_rate": round(errors / count, 6) if count else 0.0,
        "latency_ms": hist_stats(rows["bucket"].to_numpy(), rows["count"].to_numpy(), bins),
    }


def summarize_histograms(
    hist: pd.DataFrame, bins: LogBins, tasks: pd.DataFrame, commands: pd.DataFrame, duration_s: float
) -> dict[str, Any]:
    """summary.json of a histogram run: the keys of `sim.records.summary.summarize`, plus `latency_histograms`."""
    endpoints = {
        f"{method} {endpoint}": _figures(group, bins, duration_s)
        for (method, endpoint), group in hist.groupby(["method", "endpoint"], sort=True)
    }
    return {
        "duration_s": duration_s,
        "requests": _figures(hist, bins, duration_s),
        "endpoints": endpoints,
        "generator_lag_ms": stats(np.empty(0)),
        "tasks": task_summary(tasks),
        "dispatch": dispatch_summary(commands),
        "latency_histograms": {"file": HIST_FILE, "rel_error": bins.rel_error},
    }
