"""The one quantile definition: numpy's `inverted_cdf` order statistic, for one sample and per group."""

from __future__ import annotations

import numpy as np
import pytest

from sim.records import QUANTILES, grouped_quantiles, positions, quantiles

PROBS = np.array(list(QUANTILES.values()))


@pytest.mark.parametrize("n", [*range(1, 60), 100, 1_000, 1_001, 12_345])
def test_quantiles_are_numpys_inverted_cdf_to_the_bit(n: int) -> None:
    x = np.random.default_rng(n).exponential(5.0, n)
    assert np.array_equal(quantiles(x, PROBS), np.quantile(x, PROBS, method="inverted_cdf"))
    assert quantiles(x, [1.0])[0] == x.max() and quantiles(x, [0.0])[0] == x.min()


def test_a_quantile_is_a_sample_value_not_an_interpolation() -> None:
    # Four values: linear interpolation would make p50 = 2.5 and p95 = 3.85; an order statistic is 2 and 4.
    assert list(quantiles(np.array([4.0, 1.0, 3.0, 2.0]), [0.5, 0.95])) == [2.0, 4.0]
    assert list(positions(np.array([4, 20]), np.array([0.5, 0.95]))[1]) == [9, 18]


def test_nan_is_left_out_and_an_empty_sample_has_nan_quantiles() -> None:
    assert list(quantiles(np.array([np.nan, 3.0, 1.0]), [0.5, 1.0])) == [1.0, 3.0]
    assert np.isnan(quantiles(np.array([np.nan]), PROBS)).all() and np.isnan(quantiles(np.empty(0), [0.5])).all()


@pytest.mark.parametrize("n_groups", [1, 3, 70_000])  # 70,000: codes beyond 16 bits take the other sort
def test_grouped_quantiles_equal_the_quantiles_of_each_group(n_groups: int) -> None:
    rng = np.random.default_rng(n_groups)
    n = 200_000
    values = np.round(rng.lognormal(0, 1, n), 3)  # ties
    values[rng.random(n) < 0.01] = np.nan
    codes = rng.integers(-1, n_groups + 1, n)  # -1 and n_groups are outside: left out
    counts, q = grouped_quantiles(values, codes, n_groups, PROBS)
    for g in rng.choice(n_groups, min(n_groups, 50), replace=False):
        sample = values[(codes == g) & ~np.isnan(values)]
        assert counts[g] == len(sample)
        expected = np.quantile(sample, PROBS, method="inverted_cdf") if len(sample) else np.full(len(PROBS), np.nan)
        assert np.array_equal(q[g], expected, equal_nan=True), g
