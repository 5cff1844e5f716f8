"""Mean-value analysis of the closed polling loop: N agents, think time = poll interval, c workers.

A polling fleet is a closed system: an agent polls again only after its answer and its poll
interval, so the offered load falls as responses slow down (Erlang C, the open model, ignores
that feedback; it matters near saturation). Which solution is used, by fleet size:

- up to `EXACT_UP_TO` agents, exact MVA with a load-dependent station (service rate
  min(j, c) / S with j requests present): the recursion over n = 1..N keeps the station's
  queue-length distribution, O(N^2) in all;
- above it, the closed loop's fixed point with the M/M/c mean response: X = N / (Z + R(X)),
  R(X) the Erlang C response time at arrival rate X. This is the usual large-population
  approximation: the finite-source correction vanishes as N grows at a fixed utilisation,
  and for the fleets of 10^3 and more that capacity sweeps are about it is far below the
  simulation's resolution (the tests check it against the exact solution at the switch).

It gives the mean response time and throughput, not quantiles: beside each sweep point it
checks the simulated mean latency and poll rate.
"""

from __future__ import annotations

import math

import numpy as np

from sim.report.capacity import erlang_c

EXACT_UP_TO = 2000


def mva_exact(agents: int, think_s: float, service_s: float, workers: int) -> tuple[float, float]:
    """(throughput per second, mean response in seconds) by exact load-dependent MVA."""
    _check(agents, think_s, service_s, workers)
    p = np.array([1.0])  # P(j requests at the station | n - 1 agents), j = 0..n-1
    x = r = 0.0
    for n in range(1, agents + 1):
        j = np.arange(1, n + 1)
        per = service_s / np.minimum(j, workers)  # time per request with j present: S / min(j, c)
        r = float(np.sum(j * per * p))
        x = n / (think_s + r)
        tail = x * per * p
        p = np.concatenate([[max(0.0, 1.0 - tail.sum())], tail])
    return x, r


def mmc_mean_response_s(arrival_per_s: float, service_s: float, workers: int) -> float:
    """Mean response time (wait + service) of M/M/c in seconds; inf when unstable."""
    offered = arrival_per_s * service_s
    if offered >= workers:
        return math.inf
    return service_s + erlang_c(workers, offered) * service_s / (workers - offered)


def mva_closed(agents: int, think_s: float, service_s: float, workers: int) -> tuple[float, float]:
    """(throughput per second, mean response in seconds) of the closed loop (see the module docstring)."""
    _check(agents, think_s, service_s, workers)
    if agents <= EXACT_UP_TO:
        return mva_exact(agents, think_s, service_s, workers)
    lo, hi = 0.0, min(agents / (think_s + service_s), workers / service_s)
    for _ in range(200):  # X (Z + R(X)) grows with X: bisection on the throughput
        mid = (lo + hi) / 2
        if mid * (think_s + mmc_mean_response_s(mid, service_s, workers)) < agents:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return lo, min(mmc_mean_response_s(lo, service_s, workers), agents / lo - think_s if lo > 0 else math.inf)


def _check(agents: int, think_s: float, service_s: float, workers: int) -> None:
    if agents < 1 or workers < 1:
        raise ValueError(f"agents and workers must be at least 1, got {agents} and {workers}")
    if service_s <= 0 or think_s < 0:
        raise ValueError(f"service time must be positive and think time non-negative, got {service_s}, {think_s}")
