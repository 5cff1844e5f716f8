"""The fast engine: a scenario's polling plane simulated in compiled code, for fleets of 10^5..10^6.

`simulate(scenario)` turns the scenario into arrays (`sim.fast.kernel`), runs the compiled
event loop in slices of virtual time (so a long run shows progress and Ctrl-C stops it
between slices) and returns the histograms and the server's figures.

What it models, as the SimPy simulation does (`sim.des.engine`, `sim.model.agent`): every
agent registers when the fleet's arrival says, then polls every `poll_interval_s` +-
`poll_jitter_s` from a stationary phase; the server's workers, write lock, per-endpoint
service times (`poll`, `poll_write`, `register`, with `default` where unlisted), the liveness
write of a poll, the round trip drawn once per request, the request timeout, the scenario's
outages, and the retry policy with its cap and its number of tries. What it does not model:
the operator and everything that follows from it (tasks, commands, progress reports, command
results, log uploads), so a poll never carries a command and never writes a first delivery.
`sim.fast.scope.not_modelled(scenario)` says which of a scenario's parts are left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim.fast import kernel as K
from sim.fleet import arrival_s
from sim.model.distributions import Constant, Distribution, Empirical, Exponential, LogNormal, Uniform
from sim.model.faults import OutageMode
from sim.model.liveness import LivenessWrite
from sim.model.retry import RetryPolicyName
from sim.records.hist import LogBins
from sim.scenario import Scenario

BINS = LogBins()  # the latency buckets of every histogram run (relative width 1 %, 1 µs .. 10^8 ms)
MAX_SLOTS_LOG2 = 22  # at most 4 M buckets (32 MB of list heads) in the calendar queue
MAX_TIME_BINS = 300  # time bins of a run: enough for a report's figures, few enough to keep in memory
ENDPOINT_NAMES = ("poll", "register")  # kernel.E_POLL, kernel.E_REGISTER
OUTCOMES = ((200, ""), (0, "refused"), (503, "SMS.0503"), (0, "timeout"))  # kernel.O_* (status, error)
_RETRY = {
    RetryPolicyName.NONE: K.R_NONE,
    RetryPolicyName.FIXED: K.R_FIXED,
    RetryPolicyName.EXPONENTIAL: K.R_EXPONENTIAL,
    RetryPolicyName.EXPONENTIAL_FULL_JITTER: K.R_FULL_JITTER,
    RetryPolicyName.DECORRELATED_JITTER: K.R_DECORRELATED,
}
_LIVENESS = {
    LivenessWrite.EVERY_POLL: K.L_EVERY_POLL,
    LivenessWrite.COALESCED: K.L_COALESCED,
    LivenessWrite.OFF: K.L_OFF,
}


@dataclass
class FastResult:
    """What a fast run produced: `counts[group, time bin, bucket]` and the server's accumulated figures."""

    counts: np.ndarray
    bin_s: float
    duration_s: float  # virtual seconds simulated (less than the scenario's when interrupted)
    complete: bool
    wall_s: float
    stats: dict[str, float] = field(default_factory=dict)
    workers: int = 1

    @staticmethod
    def group(g: int) -> tuple[str, int, str]:
        """(endpoint name, status, error) of histogram group `g`."""
        endpoint, outcome = divmod(g, K.N_OUTCOMES)
        status, error = OUTCOMES[outcome]
        return ENDPOINT_NAMES[endpoint], status, error

    @property
    def requests(self) -> int:
        return int(self.counts.sum())


def time_bin_s(duration_s: float) -> float:
    """A round time-bin width giving at most MAX_TIME_BINS bins (at least 1 s)."""
    raw = max(1.0, duration_s / MAX_TIME_BINS)
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if step >= raw:
            return float(step)
    return float(math.ceil(raw / 3600) * 3600)


def _dist_row(d: Distribution) -> tuple[list[float], tuple[float, ...]]:
    if isinstance(d, Constant):
        return [K.CONSTANT, d.value, 0.0], ()
    if isinstance(d, Uniform):
        return [K.UNIFORM, d.low, d.high], ()
    if isinstance(d, Exponential):
        return [K.EXPONENTIAL, d.mean, 0.0], ()
    if isinstance(d, LogNormal):
        return [K.LOGNORMAL, math.log(d.median), d.sigma], ()
    if isinstance(d, Empirical):
        return [K.EMPIRICAL, 0.0, 0.0], d.values
    raise TypeError(f"the fast engine cannot sample {type(d).__name__}")


def dist_tables(scenario: Scenario) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The round trip and service distributions as the kernel's (dists, emp, emp_n) tables."""
    cfg = scenario.server
    rows = [
        _dist_row(d)
        for d in (
            cfg.rtt_ms,
            cfg.service_ms_for("poll"),
            cfg.service_ms_for("poll_write"),
            cfg.service_ms_for("register"),
        )
    ]
    width = max(1, max(len(values) for _, values in rows))
    emp = np.zeros((len(rows), width))
    emp_n = np.ones(len(rows), dtype=np.int64)
    for i, (_, values) in enumerate(rows):
        if values:
            emp[i, : len(values)] = values
            emp_n[i] = len(values)
    return np.array([r for r, _ in rows], dtype=np.float64), emp, emp_n


def arrivals_s(scenario: Scenario) -> np.ndarray:
    """When each agent starts (registers): `sim.fleet.arrival_s`, the rule both engines and the
    load test share, for the whole fleet (about a second for 10^6 agents)."""
    n = scenario.fleet.agents
    return np.fromiter((arrival_s(scenario, i) for i in range(n)), dtype=np.float64, count=n)


def calendar(scenario: Scenario) -> tuple[float, int]:
    """The calendar queue's bucket width (s) and number of buckets (a power of two) for a scenario.

    About two events a bucket at the steady poll rate, and a year (all buckets) that spans a
    poll interval, a timeout and a retry wait, so that an event rarely waits a whole year in
    its bucket's list."""
    agent = scenario.agent
    rate = scenario.fleet.agents / agent.poll_interval_s
    width = 2.0 / max(rate, 1e-9)
    horizon = agent.poll_interval_s + agent.poll_jitter_s + agent.request_timeout_s + agent.retry.cap_s
    slots = 1 << max(10, min(MAX_SLOTS_LOG2, math.ceil(math.log2(horizon / width))))
    width = max(width, horizon / slots)  # fewer buckets than the horizon wants: wider ones
    return width, slots


def simulate(scenario: Scenario, *, progress: Callable[[float, float], None] | None = None) -> FastResult:
    """Simulate the polling plane of `scenario`; `progress(now_s, duration_s)` every 1 % of virtual time.

    On Ctrl-C, returns what was simulated so far (`complete` false) rather than raising.
    """
    wall0 = time.perf_counter()
    n = scenario.fleet.agents
    agent, cfg = scenario.agent, scenario.server
    duration = scenario.duration_s
    K.seed_rng(scenario.seed)
    dists, emp, emp_n = dist_tables(scenario)
    width, slots = calendar(scenario)
    bin_s = time_bin_s(duration)
    retry = agent.retry
    p = np.zeros(K.N_PARAMS)
    p[K.P_DURATION], p[K.P_INTERVAL], p[K.P_JITTER] = duration, agent.poll_interval_s, agent.poll_jitter_s
    p[K.P_TIMEOUT] = agent.request_timeout_s
    p[K.P_RETRY_POLICY], p[K.P_RETRY_BASE], p[K.P_RETRY_CAP] = _RETRY[retry.policy], retry.base_s, retry.cap_s
    p[K.P_ATTEMPTS] = retry.attempts()
    p[K.P_LIVE_MODE], p[K.P_COALESCE] = _LIVENESS[cfg.liveness.write], cfg.liveness.coalesce_s
    # A registration re-queues once here, behind all those waiting, whatever `requeue_bodies` and
    # `requeue_at` say (the SimPy engine re-queues that many times, behind that share): a fleet
    # registers once, at its start.
    p[K.P_WRITE_LOCK], p[K.P_REQUEUE_REGISTER] = float(cfg.write_lock), float(cfg.requeue_bodies)
    p[K.P_IDLE_START] = cfg.idle_start_ms / 1000.0
    p[K.P_BIN_S], p[K.P_LO], p[K.P_LOG_STEP] = bin_s, BINS.lo, math.log1p(BINS.rel_width)
    p[K.P_WIDTH] = width
    agents = np.zeros((n, K.AGENT_COLUMNS))
    agents[:, K.A_NEXT] = K.S_REGISTER
    agents[:, K.A_VISIT] = -np.inf
    agents[:, K.A_SENT] = arrivals_s(scenario)
    heads = np.full(slots, -1, dtype=np.int64)
    K.start(agents, heads, width, dists, emp, emp_n)
    run_t, run_a = np.empty(n), np.empty(n, dtype=np.int64)
    wfree = np.zeros(cfg.workers)
    counts = np.zeros((len(ENDPOINT_NAMES) * K.N_OUTCOMES, int(math.ceil(duration / bin_s)), BINS.n), dtype=np.int64)
    stats = np.zeros(K.N_STATS)
    outages = scenario.fault_timeline().outages
    out_start = np.array([o.start_s for o in outages], dtype=np.float64)
    out_end = np.array([o.end_s for o in outages], dtype=np.float64)
    out_mode = np.array([K.M_REFUSED if o.mode is OutageMode.REFUSED else K.M_503 for o in outages], dtype=np.int8)
    step = duration / 100
    now, complete = 0.0, False
    try:
        while now < duration:
            now = min(duration, now + step)
            K.run_until(
                now if now < duration else math.inf,
                p,
                agents,
                heads,
                run_t,
                run_a,
                wfree,
                dists,
                emp,
                emp_n,
                out_start,
                out_end,
                out_mode,
                counts,
                stats,
            )
            if progress is not None:
                progress(now, duration)
        complete = True
    except KeyboardInterrupt:
        pass
    simulated = duration if complete else min(duration, stats[K.ST_BUCKET] * width)
    span = max(simulated, 1e-9)
    figures = {
        "events": float(stats[K.ST_EVENTS]),
        "busy_fraction": float(stats[K.ST_BUSY_S]) / (cfg.workers * span),
        "service_fraction": float(stats[K.ST_SERVICE_S]) / (cfg.workers * span),
        "write_lock_busy_fraction": float(stats[K.ST_LOCK_S]) / span,
        "writes": float(stats[K.ST_WRITES]),
        "poll_writes": float(stats[K.ST_POLL_WRITES]),
        "registrations": float(stats[K.ST_REGISTERED]),
        "unanswered_at_end": float(stats[K.ST_LOST]),
        "most_events_in_a_bucket": float(stats[K.ST_MAX_RUN]),
    }
    return FastResult(counts, bin_s, simulated, complete, time.perf_counter() - wall0, figures, cfg.workers)
