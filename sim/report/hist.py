"""Log-bucketed histograms and the histogram bootstrap behind every quantile in the reports.

Why histograms: a report must read 10^7 request rows in seconds and put a confidence
interval on every percentile. Sorting each endpoint's latencies a thousand times (a plain
bootstrap) is out of the question, so values are first counted into fine log-spaced bins
(the HDR-histogram idea) and everything afterwards works on the counts, whose size does not
grow with the number of rows.

The bins (`LogBins`): bin 0 holds every value below `lo` (zero included: a request that did
not queue has `queue_wait_ms == 0`); bin k >= 1 holds [lo (1+r)^(k-1), lo (1+r)^k), and the
last bin also everything above `hi`. A bin is represented by its geometric midpoint (bin 0
by 0), so a quantile read off the histogram is within a relative error of sqrt(1+r) - 1
(about 0.5 % at the default r = 1 %) of a sample value, or within `lo` in absolute terms
below `lo`. The defaults (lo = 0.001, hi = 1e8, r = 1 %: about 2,300 bins) cover 1 µs to a
day in milliseconds, or 1 ms to three years in seconds.

Quantiles use the nearest-rank definition (the value of the ceil(q n)-th smallest sample, as
HDR histograms do), not numpy's linear interpolation: for a few samples the two differ by
up to one sample spacing; for thousands they agree within the bin resolution.

The bootstrap: each group's nonzero bin counts are resampled `n_boot` times as a multinomial
draw with the same total (exactly what resampling the rows with replacement does to their
histogram), and each resample's quantiles are read off its cumulative counts. The 95 %
interval is the 2.5th to 97.5th percentile of the resampled quantiles (percentile
bootstrap). Cost: n_boot x (nonzero bins) per group, independent of the row count. A
percentile bootstrap of an extreme quantile (p99.9 with a few thousand samples, or the
max) is known to be too narrow; the max's interval only says how much the observed max
depends on the few largest rows. Differences smaller than the bin resolution (about 1 %)
cannot be resolved, and intervals are quantized too: with very many samples an interval is
one or two bins wide (about 1 %) even when the sampling error is smaller.

Reproducible: every group draws from its own generator seeded by (seed, the group's label),
so a group's interval does not depend on which other groups are in the table.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Quantile names used in every table (column prefixes) and their probabilities.
QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p99_9": 0.999, "max": 1.0}
N_BOOT = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class LogBins:
    """Log-spaced bins of relative width `rel_width` from `lo` to `hi`, plus bin 0 below `lo`."""

    rel_width: float = 0.01
    lo: float = 1e-3
    hi: float = 1e8
    n: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n", int(math.ceil(math.log(self.hi / self.lo) / math.log1p(self.rel_width))) + 2)

    def index(self, values: np.ndarray) -> np.ndarray:
        """The bin of each value (int64); NaN gets -1 (callers drop it)."""
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor(np.log(v / self.lo) / math.log1p(self.rel_width)) + 1
        k = np.where(v < self.lo, 0, np.minimum(k, self.n - 1))
        return np.where(np.isnan(v), -1, k).astype(np.int64)

    def value(self, index: np.ndarray) -> np.ndarray:
        """The value a bin stands for: its geometric midpoint (bin 0: zero)."""
        k = np.asarray(index, dtype=np.float64)
        return np.where(k <= 0, 0.0, self.lo * np.power(1.0 + self.rel_width, k - 0.5))

    def upper(self, index: np.ndarray) -> np.ndarray:
        """The upper edge of a bin (for CDFs: the share of values below this edge)."""
        k = np.asarray(index, dtype=np.float64)
        return self.lo * np.power(1.0 + self.rel_width, k)


DEFAULT_BINS = LogBins()


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
    """Nearest rank (1-based) of each probability; p = 1 is the last sample."""
    return np.maximum(np.ceil(np.multiply.outer(np.asarray(total, dtype=np.float64), probs) - 1e-9), 1)


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


def quantiles(h: GroupHistograms, g: int, probs: np.ndarray) -> np.ndarray:
    """Group g's quantiles (nearest rank, bin midpoints); NaN for an empty group."""
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


def quantile_frame(
    h: GroupHistograms,
    names: dict[str, float] | None = None,
    *,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
) -> pd.DataFrame:
    """One row per group: `count`, then for each quantile NAME the columns NAME, NAME_lo, NAME_hi."""
    names = names or QUANTILES
    probs = np.array(list(names.values()))
    rows = []
    for g, label in enumerate(h.labels):
        point = quantiles(h, g, probs)
        lo, hi = interval(bootstrap(h, g, probs, n_boot, seed), level) if n_boot else (point, point)
        row: dict[str, float | int | str] = {"group": label, "count": h.total(g)}
        for i, name in enumerate(names):
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = point[i], lo[i], hi[i]
        rows.append(row)
    columns = ["group", "count", *[f"{n}{s}" for n in names for s in ("", "_lo", "_hi")]]
    return pd.DataFrame(rows, columns=columns).set_index("group")


def combine(h: GroupHistograms, label: str) -> GroupHistograms:
    """All of h's groups counted as one group called `label` (for an overall row)."""
    if not h.bins:
        return GroupHistograms([label], [np.empty(0, np.int64)], [np.empty(0, np.int64)], h.spec)
    dense = np.bincount(np.concatenate(h.bins), weights=np.concatenate(h.counts), minlength=h.spec.n)
    bins = np.flatnonzero(dense)
    return GroupHistograms([label], [bins], [dense[bins].astype(np.int64)], h.spec)


def binned_quantiles(
    cells: np.ndarray, values: np.ndarray, n_cells: int, probs: np.ndarray, spec: LogBins = DEFAULT_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of `values` in each of `n_cells` cells (e.g. time bins): (counts (n_cells,), quantiles (n_cells, q)).

    Sparse, so memory follows the rows and not cells x bins: the (cell, bin) codes are sorted
    once; within a cell the cumulative count over the sorted codes is monotonic, so each
    cell's nearest rank is found by one binary search over the global cumulative counts.
    """
    k = spec.index(values)
    cells = np.asarray(cells, dtype=np.int64)
    keep = (k >= 0) & (cells >= 0) & (cells < n_cells)
    codes, per_code = np.unique(cells[keep] * spec.n + k[keep], return_counts=True)
    cell_of, bin_of = codes // spec.n, codes % spec.n
    totals = np.bincount(cell_of, weights=per_code, minlength=n_cells).astype(np.int64)
    out = np.full((n_cells, len(probs)), np.nan)
    if codes.size == 0:
        return totals, out
    cum = np.cumsum(per_code)
    before = np.concatenate(([0], np.cumsum(totals)[:-1]))  # rows in all earlier cells
    filled = np.flatnonzero(totals)
    targets = before[filled, None] + _ranks(totals[filled], probs)
    pos = np.searchsorted(cum, targets, side="left")
    out[filled] = spec.value(bin_of[pos])
    return totals, out
