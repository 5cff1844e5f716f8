"""Random durations and sizes: small frozen objects with `sample(rng)`, `mean` and `quantile(p)`.

A scenario turns each of its distribution fields into one of these (`Constant`, `Uniform`,
`Exponential`, `LogNormal`, `Empirical`). The caller owns the `random.Random`, so a seeded run
is reproducible and two agents never share hidden state. `sample` sits on the simulation's
hot path (millions of calls), so it is one call into `random` with parameters precomputed in
`__post_init__`. `to_spec()` gives back the scenario-file form, for run manifests.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

_STANDARD_NORMAL = NormalDist()


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_p(p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"quantile needs 0 <= p < 1, got {p!r}")


class Distribution:
    """What every distribution offers; subclasses are frozen dataclasses."""

    __slots__ = ()

    # Every subclass also has `mean` and `variance` (a property, or for Exponential the field
    # itself). They are declared for the type checker only: a property on the base at run time
    # would become the default value of a dataclass field of the same name.
    if TYPE_CHECKING:

        @property
        def mean(self) -> float: ...

        @property
        def variance(self) -> float: ...

    def sample(self, rng: random.Random) -> float:
        raise NotImplementedError

    def quantile(self, p: float) -> float:
        raise NotImplementedError

    def to_spec(self) -> dict[str, Any]:
        """The scenario-file mapping (`{dist: ..., ...}`) that builds this distribution."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Constant(Distribution):
    value: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _finite("value", self.value))

    def sample(self, rng: random.Random) -> float:
        return self.value

    @property
    def mean(self) -> float:
        return self.value

    @property
    def variance(self) -> float:
        return 0.0

    def quantile(self, p: float) -> float:
        _check_p(p)
        return self.value

    def to_spec(self) -> dict[str, Any]:
        return {"dist": "constant", "value": self.value}


@dataclass(frozen=True, slots=True)
class Uniform(Distribution):
    low: float
    high: float

    def __post_init__(self) -> None:
        low, high = _finite("low", self.low), _finite("high", self.high)
        if low > high:
            raise ValueError(f"uniform needs low <= high, got low={low} high={high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def sample(self, rng: random.Random) -> float:
        return self.low + (self.high - self.low) * rng.random()

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def variance(self) -> float:
        return (self.high - self.low) ** 2 / 12

    def quantile(self, p: float) -> float:
        _check_p(p)
        return self.low + (self.high - self.low) * p

    def to_spec(self) -> dict[str, Any]:
        return {"dist": "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True, slots=True)
class Exponential(Distribution):
    mean: float
    _rate: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mean = _finite("mean", self.mean)
        if mean <= 0:
            raise ValueError(f"exponential needs mean > 0, got {mean}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "_rate", 1.0 / mean)

    def sample(self, rng: random.Random) -> float:
        return rng.expovariate(self._rate)

    @property
    def variance(self) -> float:
        return self.mean**2

    def quantile(self, p: float) -> float:
        _check_p(p)
        return -self.mean * math.log1p(-p)

    def to_spec(self) -> dict[str, Any]:
        return {"dist": "exponential", "mean": self.mean}


@dataclass(frozen=True, slots=True)
class LogNormal(Distribution):
    """Parametrised by median and sigma (of the underlying normal), the way people size disks."""

    median: float
    sigma: float
    _mu: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        median, sigma = _finite("median", self.median), _finite("sigma", self.sigma)
        if median <= 0:
            raise ValueError(f"lognormal needs median > 0, got {median}")
        if sigma < 0:
            raise ValueError(f"lognormal needs sigma >= 0, got {sigma}")
        object.__setattr__(self, "median", median)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "_mu", math.log(median))

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(self._mu, self.sigma)

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2)

    @property
    def variance(self) -> float:
        s2 = self.sigma**2
        return math.expm1(s2) * self.median**2 * math.exp(s2)

    def quantile(self, p: float) -> float:
        _check_p(p)
        if p == 0.0:
            return 0.0
        return self.median * math.exp(self.sigma * _STANDARD_NORMAL.inv_cdf(p))

    def to_spec(self) -> dict[str, Any]:
        return {"dist": "lognormal", "median": self.median, "sigma": self.sigma}


@dataclass(frozen=True, slots=True)
class Empirical(Distribution):
    """Resamples observed values (e.g. latencies from a load test), each equally likely."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        values = tuple(_finite(f"values[{i}]", v) for i, v in enumerate(self.values))
        if not values:
            raise ValueError("empirical needs at least one value")
        object.__setattr__(self, "values", values)

    def sample(self, rng: random.Random) -> float:
        # random() < 1, so the index stays below len(values): the classic choice() recipe,
        # cheaper than rng.choice's bit-level rejection sampling.
        values = self.values
        return values[int(rng.random() * len(values))]

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def variance(self) -> float:
        m = self.mean
        return math.fsum((v - m) ** 2 for v in self.values) / len(self.values)

    def quantile(self, p: float) -> float:
        """The step-wise quantile: the value at rank floor(p * n) of the sorted values."""
        _check_p(p)
        ordered = sorted(self.values)
        return ordered[int(p * len(ordered))]

    def to_spec(self) -> dict[str, Any]:
        return {"dist": "empirical", "values": list(self.values)}
