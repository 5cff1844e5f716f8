"""Closed-form confidence intervals for counts and proportions (throughput and error rates).

Throughput is a count over a duration, so its interval is the exact (Garwood) Poisson
interval of the count divided by the duration, and two runs' throughputs are compared by
the exact conditional interval of the ratio of two Poisson rates (given the total, run B's
count is binomial). A polling fleet is more regular than a Poisson stream, so these
intervals are conservative: a difference they call significant is one.

Error rates are proportions: Wilson score intervals, and Newcombe's hybrid score interval
for the difference of two (method 10 in Newcombe 1998), which behave at 0 errors, where the
normal approximation does not.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

LEVEL = 0.95


def poisson_interval(count: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval for the mean of a Poisson count (Garwood)."""
    k = np.asarray(count, dtype=np.float64)
    a = (1 - level) / 2
    lo = np.where(k > 0, stats.chi2.ppf(a, 2 * k) / 2, 0.0)
    hi = stats.chi2.ppf(1 - a, 2 * k + 2) / 2
    return lo, hi


def rate_ratio_interval(
    count_a: float, t_a: float, count_b: float, t_b: float, level: float = LEVEL
) -> tuple[float, float, float]:
    """(ratio, lo, hi) of the rate of B to the rate of A, each a Poisson count over a duration.

    Conditional on the total n = a + b, b is binomial with p = rB tB / (rA tA + rB tB); the
    Clopper-Pearson interval for p maps to the ratio rB / rA = p / (1 - p) * tA / tB.
    """
    n = count_a + count_b
    if count_a == 0 or n == 0:
        return (float("inf") if count_b else float("nan")), float("nan"), float("nan")
    a = (1 - level) / 2
    p_lo = stats.beta.ppf(a, count_b, count_a + 1) if count_b > 0 else 0.0
    p_hi = stats.beta.ppf(1 - a, count_b + 1, count_a) if count_a > 0 else 1.0
    scale = t_a / t_b

    def odds(p: float) -> float:
        return p / (1 - p) * scale if p < 1 else float("inf")

    return (count_b / t_b) / (count_a / t_a), odds(float(p_lo)), odds(float(p_hi))


def wilson_interval(errors: np.ndarray, total: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (NaN where total is 0)."""
    k = np.asarray(errors, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def proportion_difference_interval(
    errors_a: int, total_a: int, errors_b: int, total_b: int, level: float = LEVEL
) -> tuple[float, float, float]:
    """(pB - pA, lo, hi): Newcombe's hybrid score interval for the difference of two proportions."""
    if total_a == 0 or total_b == 0:
        return float("nan"), float("nan"), float("nan")
    pa, pb = errors_a / total_a, errors_b / total_b
    (la, ua), (lb, ub) = (
        wilson_interval(np.array(errors_a), np.array(total_a), level),
        wilson_interval(np.array(errors_b), np.array(total_b), level),
    )
    d = pb - pa
    lo = d - float(np.sqrt((pb - lb) ** 2 + (ua - pa) ** 2))
    hi = d + float(np.sqrt((ub - pb) ** 2 + (pa - la) ** 2))
    return d, lo, hi
