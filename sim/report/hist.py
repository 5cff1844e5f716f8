"""Confidence intervals for quantiles: log-bucketed histograms and a histogram bootstrap.

Point estimates are not read off these histograms: every quantile a report prints is the
exact order statistic of `sim.records.quantiles`, the very numbers of summary.json
(`quantile_frame` computes them). The histograms are for what needs many passes over the
data: 1,000 bootstrap resamples per group, and CDF figures.

Why histograms: a report must read 10^7 request rows in seconds and put a confidence
interval on every percentile. Sorting each endpoint's latencies a thousand times (a plain
bootstrap) is out of the question, so values are first counted into fine log-spaced bins
(the HDR-histogram idea) and every resample works on the counts, whose size does not grow
with the number of rows.

The bins (`LogBins`, defined in `sim.records.hist`: latency_hist.parquet uses the same ones):
bin 0 holds every value below `lo` (zero included: a request that did
not queue has `queue_wait_ms == 0`); bin k >= 1 holds [lo (1+r)^(k-1), lo (1+r)^k), and the
last bin also everything above `hi`. A bin is represented by its geometric midpoint (bin 0
by 0), so a quantile read off the histogram is within a relative error of sqrt(1+r) - 1
(about 0.5 % at the default r = 1 %) of the exact one, or within `lo` in absolute terms
below `lo`. The defaults (lo = 0.001, hi = 1e8, r = 1 %: 2,548 bins) cover 1 µs to a
day in milliseconds, or 1 ms to three years in seconds.

The bootstrap: each group's nonzero bin counts are resampled `n_boot` times as a multinomial
draw with the same total (exactly what resampling the rows with replacement does to their
histogram), and each resample's quantiles are read off its cumulative counts, with the same
order-statistic positions as the exact quantiles (`sim.records.quantiles.positions`). The
resamples are then moved onto the exact estimate (`centred`: scaled by exact / histogram
quantile, which keeps their relative spread), and the 95 % interval is the 2.5th to 97.5th
percentile of the moved resamples (percentile bootstrap), widened if need be to contain the
estimate. Cost: n_boot x (nonzero bins) per group, independent of the row count. A
percentile bootstrap of an extreme quantile (p99.9 with a few thousand samples, or the
max) is known to be too narrow; the max's interval only says how much the observed max
depends on the few largest rows. Intervals are quantized by the bins: with very many
samples an interval is one or two bins wide (about 1 %) even when the sampling error is
smaller, and differences smaller than that cannot be resolved.

Reproducible: every group draws from its own generator seeded by (seed, the group's label),
so a group's interval does not depend on which other groups are in the table.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.records.hist import DEFAULT_BINS, LogBins
from sim.records.quantiles import QUANTILES, grouped_quantiles, positions, quantiles

N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class GroupHistograms:
    """Sparse histograms of one value per group: for group g, bins[g] with counts[g] (nonzero only)."""

    labels: list[str]
    bins: list[np.ndarray]
    counts: list[np.ndarray]
    spec: LogBins = DEFAULT_BINS

    def total(self, g: int) -> int:
        return int(self.counts[g].sum())

    def cdf(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """(upper bin edges, share of values at or below each edge) for group g."""
        c = self.counts[g]
        return self.spec.upper(self.bins[g]), np.cumsum(c) / max(int(c.sum()), 1)


def group_histograms(
    values: np.ndarray, codes: np.ndarray, labels: list[str], spec: LogBins = DEFAULT_BINS
) -> GroupHistograms:
    """Count `values` into `spec`'s bins per group (`codes` index `labels`; NaN values and code -1 are dropped)."""
    k = spec.index(values)
    codes = np.asarray(codes, dtype=np.int64)
    keep = (k >= 0) & (codes >= 0)
    if not keep.all():
        k, codes = k[keep], codes[keep]
    # One bincount over (group, bin) pairs: memory is groups x bins, whatever the row count.
    dense = np.bincount(codes * spec.n + k, minlength=len(labels) * spec.n).reshape(len(labels), spec.n)
    bins = [np.flatnonzero(row) for row in dense]
    return GroupHistograms(list(labels), bins, [dense[g, b] for g, b in enumerate(bins)], spec)


def _ranks(total: int | np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Rank (1-based) of each probability's order statistic: the exact quantiles' definition."""
    return positions(total, probs) + 1


def _quantile_bins(cum: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Position of the first cumulative count reaching each rank; cum is (bins,) or (rows, bins), ranks
    (q,) or (rows, q).

    Rows are searched in one call: each row is shifted above the previous one's total, which
    keeps the flattened array sorted.
    """
    if cum.ndim == 1:
        return np.searchsorted(cum, ranks, side="left")
    rows, width = cum.shape
    shift = np.arange(rows, dtype=np.float64)[:, None] * (float(cum[:, -1].max()) + 1.0)
    flat = (cum + shift).ravel()
    pos = np.searchsorted(flat, (ranks + shift).ravel(), side="left").reshape(ranks.shape)
    return pos - np.arange(rows)[:, None] * width


def hist_quantiles(h: GroupHistograms, g: int, probs: np.ndarray) -> np.ndarray:
    """Group g's quantiles read off its histogram (bin midpoints); NaN for an empty group.

    Only to centre the bootstrap (`centred`): a report's point estimates are exact.
    """
    if h.counts[g].size == 0:
        return np.full(len(probs), np.nan)
    cum = np.cumsum(h.counts[g])
    pos = _quantile_bins(cum, _ranks(int(cum[-1]), probs))
    return h.spec.value(h.bins[g][pos])


def bootstrap(h: GroupHistograms, g: int, probs: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Group g's quantiles in `n_boot` multinomial resamples of its histogram: shape (n_boot, len(probs))."""
    c = h.counts[g]
    if c.size == 0:
        return np.full((n_boot, len(probs)), np.nan)
    n = int(c.sum())
    rng = np.random.default_rng([seed, zlib.crc32(h.labels[g].encode())])
    draws = rng.multinomial(n, c / n, size=n_boot) if c.size > 1 else np.full((n_boot, 1), n)
    cum = np.cumsum(draws, axis=1)
    pos = _quantile_bins(cum, np.broadcast_to(_ranks(n, probs), (n_boot, len(probs))))
    return h.spec.value(h.bins[g][pos])


def min_samples(q: float, level: float = LEVEL) -> float:
    """Fewest samples for which a distribution-free interval of the q-quantile exists at `level`.

    With fewer, even the sample's extremes bound the quantile with less than `level` confidence,
    and a bootstrap interval understates the uncertainty (6 for p50, 72 for p95, 368 for p99,
    3,688 for p99.9; the max never has one).
    """
    a = (1 - level) / 2
    if q <= 0 or q >= 1:
        return math.inf
    return float(math.ceil(math.log(a) / math.log(max(q, 1 - q))))


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap samples along axis 0 (NaN samples ignored)."""
    a = (1 - level) / 2
    with np.errstate(all="ignore"):
        lo, hi = (
            np.nanquantile(samples, [a, 1 - a], axis=0)
            if np.isfinite(samples).any()
            else (np.full(samples.shape[1:], np.nan), np.full(samples.shape[1:], np.nan))
        )
    return lo, hi


def combine(h: GroupHistograms, label: str) -> GroupHistograms:
    """All of h's groups counted as one group called `label` (for an overall row)."""
    if not h.bins:
        return GroupHistograms([label], [np.empty(0, np.int64)], [np.empty(0, np.int64)], h.spec)
    dense = np.bincount(np.concatenate(h.bins), weights=np.concatenate(h.counts), minlength=h.spec.n)
    bins = np.flatnonzero(dense)
    return GroupHistograms([label], [bins], [dense[bins].astype(np.int64)], h.spec)


def centred(resamples: np.ndarray, point: np.ndarray, hist_point: np.ndarray) -> np.ndarray:
    """Bootstrap resamples of histogram quantiles moved onto the exact estimates `point`.

    The resamples scatter around the histogram's own quantile `hist_point`, which differs
    from the exact one by up to half a bin; scaling them by point / hist_point keeps their
    relative spread (the bins are relative) and centres them on `point`. Where the
    histogram's quantile is 0 (bin 0: values below `lo`) they are shifted instead.
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # np.where computes the branch it drops too
        ratio = point / hist_point
        return np.where(hist_point > 0, resamples * ratio, resamples + (point - hist_point))


def _contain(lo: np.ndarray, hi: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Widen [lo, hi] to hold `point`: a percentile interval of a skewed bootstrap may miss its estimate."""
    return np.fmin(lo, point), np.fmax(hi, point)


def quantile_frame(
    values: np.ndarray,
    codes: np.ndarray,
    labels: list[str],
    names: dict[str, float] | None = None,
    *,
    total: str | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    spec: LogBins = DEFAULT_BINS,
) -> pd.DataFrame:
    """One row per label (index `group`): `count`, then for each quantile NAME the columns NAME, NAME_lo, NAME_hi.

    `codes` index `labels` (NaN values and code -1 are left out). NAME is the exact quantile
    (`sim.records.quantiles`), NAME_lo/NAME_hi its bootstrap interval (`n_boot` = 0: none,
    the bounds are the point). With `total`, a last row of that label counts every value.
    """
    names = names or QUANTILES
    probs = np.array(list(names.values()))
    values = np.asarray(values, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    h = group_histograms(values, codes, labels, spec)
    counts, points = grouped_quantiles(values, codes, len(labels), probs)
    groups = [(h, g, label, counts[g], points[g]) for g, label in enumerate(labels)]
    if total is not None and labels:
        keep = (codes >= 0) & (codes < len(labels))
        everything = values[keep] if not keep.all() else values
        groups.append((combine(h, total), 0, total, int(counts.sum()), quantiles(everything, probs)))
    rows = []
    for hg, g, label, count, point in groups:
        if n_boot:
            boot = centred(bootstrap(hg, g, probs, n_boot, seed), point, hist_quantiles(hg, g, probs))
            lo, hi = _contain(*interval(boot, level), point)
        else:
            lo, hi = point, point
        row: dict[str, float | int | str] = {"group": label, "count": int(count)}
        for i, name in enumerate(names):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = point[i], lo[i], hi[i]
        rows.append(row)
    columns = ["group", "count", *[f"{n}{s}" for n in names for s in ("", "_lo", "_hi")]]
    return pd.DataFrame(rows, columns=columns).set_index("group")
