"""Distributions: seeded sample means agree with `mean`, quantiles with samples, bad parameters fail."""

from __future__ import annotations

import math
import random

import pytest

from sim.model.distributions import Constant, Distribution, Empirical, Exponential, LogNormal, Uniform

N = 40_000

CASES: list[Distribution] = [
    Constant(3.5),
    Uniform(0.5, 2.0),
    Exponential(2.0),
    LogNormal(40.0, 0.6),
    Empirical((1.0, 2.0, 2.0, 10.0)),
]


@pytest.mark.parametrize("dist", CASES, ids=lambda d: type(d).__name__)
def test_sample_mean_within_a_few_standard_errors(dist: Distribution) -> None:
    rng = random.Random(1234)
    samples = [dist.sample(rng) for _ in range(N)]
    standard_error = math.sqrt(dist.variance / N)
    # 4 standard errors: a seeded test that fails only if the formula or the sampler is wrong.
    assert abs(sum(samples) / N - dist.mean) <= 4 * standard_error + 1e-12


@pytest.mark.parametrize("dist", CASES[1:4], ids=lambda d: type(d).__name__)
def test_continuous_quantiles_match_the_samples(dist: Distribution) -> None:
    rng = random.Random(99)
    samples = [dist.sample(rng) for _ in range(N)]
    for p in (0.1, 0.5, 0.9):
        below = sum(s <= dist.quantile(p) for s in samples) / N
        assert below == pytest.approx(p, abs=0.02)


def test_same_seed_same_samples() -> None:
    a, b = random.Random(7), random.Random(7)
    d = LogNormal(800.0, 0.4)
    assert [d.sample(a) for _ in range(100)] == [d.sample(b) for _ in range(100)]


def test_lognormal_is_parametrised_by_its_median() -> None:
    d = LogNormal(40.0, 0.6)
    rng = random.Random(5)
    samples = sorted(d.sample(rng) for _ in range(N))
    assert samples[N // 2] == pytest.approx(40.0, rel=0.02)
    assert d.quantile(0.5) == pytest.approx(40.0)
    assert d.mean == pytest.approx(40.0 * math.exp(0.18))


def test_empirical_only_returns_listed_values() -> None:
    d = Empirical((0.25, 1.0, 7.5))
    rng = random.Random(3)
    seen = {d.sample(rng) for _ in range(3_000)}
    assert seen == {0.25, 1.0, 7.5}


def test_quantile_closed_forms() -> None:
    assert Uniform(1.0, 3.0).quantile(0.25) == 1.5
    assert Exponential(2.0).quantile(1 - math.exp(-1)) == pytest.approx(2.0)
    assert Empirical((3.0, 1.0, 2.0)).quantile(0.0) == 1.0
    with pytest.raises(ValueError):
        Uniform(0.0, 1.0).quantile(1.0)


def test_spec_round_trip() -> None:
    for d in CASES:
        spec = d.to_spec()
        kind = spec.pop("dist")
        cls = {
            "constant": Constant,
            "uniform": Uniform,
            "exponential": Exponential,
            "lognormal": LogNormal,
            "empirical": Empirical,
        }[kind]
        assert cls(**spec) == d


@pytest.mark.parametrize(
    "make",
    [
        lambda: Uniform(2.0, 1.0),
        lambda: Exponential(0.0),
        lambda: Exponential(-1.0),
        lambda: LogNormal(0.0, 0.5),
        lambda: LogNormal(10.0, -0.1),
        lambda: Empirical(()),
        lambda: Constant(float("nan")),
        lambda: Uniform(0.0, float("inf")),
        lambda: Empirical((1.0, "x")),  # type: ignore[arg-type]
    ],
)
def test_invalid_parameters_are_rejected(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_distributions_are_frozen_and_hashable() -> None:
    d = Exponential(2.0)
    with pytest.raises(AttributeError):
        d.mean = 3.0  # type: ignore[misc]
    assert len({Exponential(2.0), Exponential(2.0), Empirical([1.0, 2.0])}) == 2
