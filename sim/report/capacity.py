"""Capacity planning: Erlang C predictions for the poll endpoint, and the steady state of sweep runs.

The queueing view of the command endpoint: N agents polling every `poll_interval_s` seconds
offer lambda = N / poll_interval_s polls per second (the jitter is symmetric, so the mean
interval is the nominal one; thousands of independent agents make the arrivals close to
Poisson). The simulated server is `workers` FIFO workers with the poll's service time, so
with exponential service it is an M/M/c queue:

- Erlang C, P(wait > 0) = C(c, a) with offered load a = lambda * S Erlangs (S the mean
  service time), computed through the Erlang B recursion, which stays exact for any c;
- the wait is 0 with probability 1 - C, else exponential with rate c/S - lambda; the
  response time is that wait plus the service time, plus the network round trip, so its
  quantiles solve P(T > t) = 1 - q for the hypoexponential tail below (bisection).

Limits of the prediction (where the simulation is the better answer): service times that
are not exponential (a calibrated server's are usually less variable, so Erlang C is then
pessimistic), the other endpoints' requests and the write lock (ignored: polls dominate an
idle fleet), a registration storm or an outage (not a steady state), and the round trip
taken at its mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.model.intents import ENDPOINTS
from sim.records import Run
from sim.report import metrics as M
from sim.report.analysis import run_duration_s
from sim.scenario import Scenario

POLL = " ".join(ENDPOINTS["poll"])  # "GET /v1/sms/sources/{source_id}/command", as report tables name it


def erlang_c(workers: int, offered: float) -> float:
    """P(wait > 0) in an M/M/c queue with `workers` servers and `offered` = lambda * S Erlangs.

    1.0 when the queue is unstable (offered >= workers): every request would wait.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if offered < 0:
        raise ValueError(f"offered load must be non-negative, got {offered}")
    if offered >= workers:
        return 1.0
    b = 1.0  # Erlang B with 0 servers; the recursion avoids the factorials' overflow
    for k in range(1, workers + 1):
        b = offered * b / (k + offered * b)
    return workers * b / (workers - offered * (1.0 - b))


def mmc_tail(t_ms: float, arrival_per_s: float, service_ms: float, workers: int) -> float:
    """P(response time > t_ms) in M/M/c, response = FIFO wait + exponential service."""
    mu = 1.0 / service_ms  # per ms
    gamma = workers * mu - arrival_per_s / 1000.0  # rate of the wait, given that there is one
    if gamma <= 0:
        return 1.0
    c = erlang_c(workers, arrival_per_s * service_ms / 1000.0)
    no_wait = math.exp(-mu * t_ms)
    if math.isclose(gamma, mu, rel_tol=1e-9):  # wait and service with the same rate: Erlang-2 tail
        waited = (1.0 + mu * t_ms) * no_wait
    else:
        waited = (gamma * no_wait - mu * math.exp(-gamma * t_ms)) / (gamma - mu)
    return (1.0 - c) * no_wait + c * waited


def mmc_response_quantile_ms(q: float, arrival_per_s: float, service_ms: float, workers: int) -> float:
    """The q-quantile of the M/M/c response time in ms (wait + service); inf when unstable."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    if arrival_per_s * service_ms / 1000.0 >= workers:
        return math.inf
    lo, hi = 0.0, service_ms
    while mmc_tail(hi, arrival_per_s, service_ms, workers) > 1.0 - q:
        lo, hi = hi, hi * 2.0
    for _ in range(100):  # bisection to well below the 1 % resolution of the measured percentiles
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if mmc_tail(mid, arrival_per_s, service_ms, workers) > 1.0 - q else (lo, mid)
        if hi - lo < 1e-9 * hi:
            break
    return hi


@dataclass(frozen=True)
class PollQueue:
    """The poll endpoint of a scenario's simulated server as an M/M/c queue (see the module docstring)."""

    workers: int
    service_ms: float  # mean service time of a poll
    rtt_ms: float  # mean network round trip, added to every response
    poll_interval_s: float

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> "PollQueue":
        server = scenario.server
        return cls(workers=server.workers, service_ms=float(server.service_ms_for("poll").mean),
                   rtt_ms=float(server.rtt_ms.mean), poll_interval_s=float(scenario.agent.poll_interval_s))

    def polls_per_s(self, agents: float) -> float:
        return agents / self.poll_interval_s

    @property
    def saturation_fleet(self) -> float:
        """The fleet at which the workers are busy all the time (utilisation 1)."""
        return self.workers / (self.service_ms / 1000.0) * self.poll_interval_s

    def utilisation(self, agents: float) -> float:
        return self.polls_per_s(agents) * self.service_ms / 1000.0 / self.workers

    def latency_ms(self, agents: float, q: float) -> float:
        """Predicted q-quantile of the poll latency (round trip + wait + service) for `agents`."""
        return self.rtt_ms + mmc_response_quantile_ms(q, self.polls_per_s(agents), self.service_ms, self.workers)

    def max_fleet(self, target_ms: float, q: float = 0.99) -> int:
        """The largest fleet whose predicted q-quantile poll latency is at most `target_ms` (0 if none)."""
        if self.latency_ms(1, q) > target_ms:
            return 0
        lo, hi = 1, max(1, math.ceil(self.saturation_fleet))  # latency grows with the fleet: bisect
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.latency_ms(mid, q) <= target_ms else (lo, mid)
        return lo


def steady_state(run: Run, warmup_s: float, endpoint: str = POLL, *, n_boot: int = 200) -> pd.Series:
    """One endpoint's row of the report table (throughput, p50..max with intervals), after `warmup_s`.

    A sweep run starts with its fleet arriving (registrations, polls in phase); capacity is a
    steady-state question, so the requests sent before `warmup_s` are left out.
    """
    req = run.requests[run.requests["t_start_s"] >= warmup_s]
    duration = run_duration_s(run) - warmup_s
    if duration <= 0:
        raise ValueError(f"warmup_s {warmup_s} leaves nothing of a {duration + warmup_s} s run")
    table = M.endpoint_table(req, duration, n_boot=n_boot, total=False)
    if endpoint not in table.index:
        return pd.Series({"count": 0, "throughput_per_s": 0.0, "p50": np.nan, "p99": np.nan}, name=endpoint)
    return table.loc[endpoint]


def largest_meeting(sweep: pd.DataFrame, target_ms: float, column: str = "p99") -> int | None:
    """The largest `agents` of a sweep (columns agents, `column`) such that it and every smaller fleet meet the target."""
    best = None
    for agents, value in sweep.sort_values("agents")[["agents", column]].itertuples(index=False):
        if not value <= target_ms:  # NaN (no polls) counts as a miss
            break
        best = int(agents)
    return best
