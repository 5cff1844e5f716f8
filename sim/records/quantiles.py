"""The one quantile definition of the project: summary.json, the report and calibration use it.

A quantile is an order statistic: the q-quantile of n values is the value of the
ceil(q n)-th smallest (numpy's `method="inverted_cdf"`, definition 1 of Hyndman & Fan; the
"nearest rank" of HDR histograms). Why this one and not numpy's default linear
interpolation: it is always a latency that some request really had; it is the definition
the report's histogram bootstrap resamples (`sim.report.hist`), so a point estimate and its
interval speak of the same statistic; and it does not depend on how values between two
samples are imagined, which is what made summary.json (linear) and the report (nearest
rank on log bins) disagree by a sample spacing on small endpoints (6.34 vs 8.60 ms).

`positions` is the definition; `quantiles` (one sample) and `grouped_quantiles` (one sample
per group: endpoints, or endpoints x seconds) read it off sorted values. NaN values are
left out; an empty sample has NaN quantiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Quantile names used in summary.json and in every report table (column prefixes), and their probabilities.
QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p99_9": 0.999, "max": 1.0}


def positions(n: int | np.ndarray, probs: np.ndarray) -> np.ndarray:
    """0-based position in sorted order of each probability's order statistic, for samples of size `n`.

    Shape: `n`'s shape + (len(probs),). The arithmetic is numpy's own for `inverted_cdf`
    (n q - 1, kept when whole, else rounded up), so `quantiles` equals
    `np.quantile(values, probs, method="inverted_cdf")` to the bit, floating point included.
    """
    n = np.asarray(n, dtype=np.int64)
    index = np.multiply.outer(n, np.asarray(probs, dtype=np.float64)) - 1
    below = np.floor(index)
    pos = np.where(index - below == 0, below, below + 1)
    return np.clip(pos, 0, np.maximum(n - 1, 0)[..., None]).astype(np.int64)


def quantiles(values: np.ndarray, probs: np.ndarray | Sequence[float]) -> np.ndarray:
    """The `probs` quantiles of `values` (NaN left out; all NaN when no value is left)."""
    v = np.asarray(values, dtype=np.float64)
    v = np.sort(v[~np.isnan(v)])
    p = np.asarray(probs, dtype=np.float64)
    if v.size == 0:
        return np.full(p.shape, np.nan)
    return v[positions(v.size, p)]


def grouped_quantiles(
    values: np.ndarray, codes: np.ndarray, n_groups: int, probs: np.ndarray | list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of `values` per group: (counts (n_groups,), quantiles (n_groups, len(probs))).

    `codes` give each value's group in 0..n_groups-1; a NaN value or a code outside that range
    is left out, and an empty group has NaN quantiles. Cost: one stable sort of the codes (a
    radix sort when they fit 16 bits) and a sort of each group's values, so 10^7 rows take a
    second or so, and any number of groups (endpoints x seconds) one pass.
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(codes, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    keep = ~np.isnan(v) & (c >= 0) & (c < n_groups)
    if not keep.all():
        v, c = v[keep], c[keep]
    counts = np.bincount(c, minlength=n_groups).astype(np.int64)
    out = np.full((n_groups, len(p)), np.nan)
    if v.size == 0:
        return counts, out
    narrow = c.astype(np.uint16) if n_groups <= np.iinfo(np.uint16).max else c
    ordered = v[np.argsort(narrow, kind="stable")]
    ends = np.cumsum(counts)
    starts = ends - counts
    filled = np.flatnonzero(counts)
    for g in filled:
        ordered[starts[g] : ends[g]].sort()  # in place: each group's segment in value order
    out[filled] = ordered[starts[filled, None] + positions(counts[filled], p)]
    return counts, out
