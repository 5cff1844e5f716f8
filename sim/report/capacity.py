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
from matplotlib.figure import Figure

from sim.model.intents import ENDPOINTS
from sim.records import QUANTILES, Run
from sim.report import metrics as M
from sim.report.analysis import run_duration_s
from sim.report.figures import new_figure
from sim.scenario import Scenario

POLL = " ".join(ENDPOINTS["poll"])  # "GET /v1/sms/sources/{source_id}/command", as report tables name it
QUANTILE_COLUMN = {q: name for name, q in QUANTILES.items()}  # 0.99 -> "p99"


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
    def from_scenario(cls, scenario: Scenario) -> PollQueue:
        server = scenario.server
        return cls(
            workers=server.workers,
            service_ms=float(server.service_ms_for("poll").mean),
            rtt_ms=float(server.rtt_ms.mean),
            poll_interval_s=float(scenario.agent.poll_interval_s),
        )

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


def registration_s(scenario: Scenario, agents: int) -> float:
    """How long the simulated server needs to register `agents`: their register service times
    back to back, on one worker when writes hold the write lock, else spread over the workers."""
    server = scenario.server
    busy_ms = agents * float(server.service_ms_for("register").mean)
    return busy_ms / 1000.0 / (1 if server.write_lock else server.workers)


def sweep_scenario(scenario: Scenario, agents: int, ramp_s: float, duration_s: float) -> Scenario:
    """`scenario` with `agents` arriving evenly over `ramp_s` (no registration storm) for `duration_s`.

    Every fleet of a sweep gets the same ramp and duration, so their steady states (after the
    ramp) cover the same stretch of time.
    """
    return scenario.with_overrides(
        agents=agents, duration_s=duration_s, fields={"fleet.arrival": {"kind": "ramp", "duration_s": ramp_s}}
    )


def steady_state(
    run: Run, warmup_s: float, endpoint: str = POLL, *, end_s: float | None = None, n_boot: int = 200
) -> pd.Series:
    """One endpoint's row of the report table (throughput, p50..max with intervals) for requests
    sent from `warmup_s` until `end_s` (default: the end of the run).

    A sweep run starts with its fleet arriving (registrations, polls in phase); capacity is a
    steady-state question, so the requests sent before `warmup_s` are left out. `end_s` puts
    two runs on the same window (a load test's last requests come back after its nominal end).
    """
    end = run_duration_s(run) if end_s is None else end_s
    t = run.requests["t_start_s"]
    req = run.requests[(t >= warmup_s) & (t < end)]
    if end - warmup_s <= 0:
        raise ValueError(f"the window {warmup_s} s .. {end} s is empty")
    table = M.endpoint_table(req, end - warmup_s, n_boot=n_boot, total=False)
    if endpoint not in table.index:
        return pd.Series(
            {"count": 0, "throughput_per_s": 0.0, "p50": np.nan, "p95": np.nan, "p99": np.nan}, name=endpoint
        )
    return table.loc[endpoint]


def largest_meeting(sweep: pd.DataFrame, target_ms: float, column: str = "p99") -> int | None:
    """The largest `agents` of a sweep (columns agents, `column`) such that it and every smaller fleet
    meet the target."""
    best = None
    for agents, value in sweep.sort_values("agents")[["agents", column]].itertuples(index=False):
        if not value <= target_ms:  # NaN (no polls) counts as a miss
            break
        best = int(agents)
    return best


def sweep_figure(sweep: pd.DataFrame, queue: PollQueue, target_ms: float, q: float = 0.99) -> Figure:
    """Measured (simulated) poll latency and throughput against fleet size, beside Erlang C.

    `sweep` has one row per fleet: agents, throughput_per_s, and the latency column `pNN` of
    quantile `q` with `pNN_lo`/`pNN_hi` (as `steady_state` returns them).
    """
    col = QUANTILE_COLUMN[q]
    fig, (lat, thr) = new_figure(
        f"Poll endpoint against fleet size: simulation and Erlang C (M/M/{queue.workers})", cols=2
    )
    sweep = sweep.sort_values("agents")
    n = np.linspace(1, min(queue.saturation_fleet * 0.995, float(sweep["agents"].max()) * 1.1), 200)
    err = np.vstack([sweep[col] - sweep[f"{col}_lo"], sweep[f"{col}_hi"] - sweep[col]])
    lat.errorbar(
        sweep["agents"],
        sweep[col],
        yerr=np.clip(err, 0, None),
        fmt="o",
        capsize=3,
        label=f"simulation {col} (95% interval)",
    )
    lat.plot(n, [queue.latency_ms(x, q) for x in n], label=f"Erlang C {col}")
    lat.axhline(target_ms, color="tab:red", linestyle="--", label=f"target {target_ms:.1f} ms")
    lat.set_yscale("log")
    lat.set(xlabel="agents", ylabel=f"{col} poll latency (ms)", title="Latency")
    thr.errorbar(
        sweep["agents"],
        sweep["throughput_per_s"],
        yerr=np.clip(
            np.vstack(
                [sweep["throughput_per_s"] - sweep["throughput_lo"], sweep["throughput_hi"] - sweep["throughput_per_s"]]
            ),
            0,
            None,
        ),
        fmt="o",
        capsize=3,
        label="simulation (95% interval)",
    )
    thr.plot(n, n / queue.poll_interval_s, label="offered: agents / poll interval")
    thr.axhline(queue.workers / queue.service_ms * 1000, color="0.5", linestyle=":", label="server capacity")
    thr.set(xlabel="agents", ylabel="polls per second", title="Throughput")
    for ax in (lat, thr):
        ax.legend(fontsize=8)
    return fig
