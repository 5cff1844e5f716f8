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
`not_modelled(scenario)` says which of a scenario's parts are left out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sim.fast import kernel as K
from sim.fleet import has_operator_work
from sim.model.distributions import Constant, Distribution, Empirical, Exponential, LogNormal, Uniform
from sim.model.faults import OutageMode
from sim.model.liveness import LivenessWrite
from sim.model.retry import RetryPolicyName
from sim.scenario import Ramp, Scenario, Waves

# Histogram buckets: those of sim.records.hist.LogBins (relative width 1 %, 1 µs .. 10^8 ms).
REL_WIDTH, LO_MS, HI_MS = 0.01, 1e-3, 1e8
N_BUCKETS = int(math.ceil(math.log(HI_MS / LO_MS) / math.log1p(REL_WIDTH))) + 2
MAX_TIME_BINS = 300  # time bins of a run: enough for a report's figures, few enough to keep in memory
ENDPOINT_NAMES = ("poll", "register")  # kernel.E_POLL, kernel.E_REGISTER
OUTCOMES = ((200, ""), (0, "refused"), (503, "SMS.0503"), (0, "timeout"))  # kernel.O_* (status, error)
_RETRY = {
    RetryPolicyName.NONE: K.R_NONE,
    RetryPolicyName.FIXED: K.R_FIXED,
    RetryPolicyName.EXPONENTIAL: K.R_EXPONENTIAL,
    RetryPolicyName.EXPONENTIAL_FULL_JITTER: K.R_FULL_JITTER,
}
_LIVENESS = {LivenessWrite.EVERY_POLL: K.L_EVERY_POLL, LivenessWrite.COALESCED: K.L_COALESCED, LivenessWrite.OFF: K.L_OFF}


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


def not_modelled(scenario: Scenario) -> list[str]:
    """The parts of `scenario` the fast engine leaves out, one line each (empty: it models all of it)."""
    out = []
    if has_operator_work(scenario):
        out.append(
            "the operator's tasks (and with them commands, progress reports, command results, log uploads): "
            "the fast engine simulates the polling plane only; use --engine simpy for the lifecycle"
        )
    return out


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
        for d in (cfg.rtt_ms, cfg.service_ms_for("poll"), cfg.service_ms_for("poll_write"), cfg.service_ms_for("register"))
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
    """When each agent starts (registers), as sim.fleet.arrival_s, for the whole fleet at once."""
    n = scenario.fleet.agents
    arrival = scenario.fleet.arrival
    index = np.arange(n, dtype=np.float64)
    if isinstance(arrival, Ramp):
        return arrival.duration_s * index / n
    if isinstance(arrival, Waves):
        per_wave = math.ceil(n / arrival.waves)
        return arrival.interval_s * np.floor(index / per_wave)
    return np.zeros(n)


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
    sent = arrivals_s(scenario)
    half = K.first_halves(dists, emp, emp_n, n)
    ht = sent + half
    ha = np.arange(n, dtype=np.int32)
    K.heapify(ht, ha)
    nxt = np.full(n, K.S_REGISTER, dtype=np.int8)
    fails = np.zeros(n, dtype=np.int32)
    last_visit = np.full(n, -np.inf)
    wfree = np.zeros(cfg.workers)
    lock_free = np.zeros(1)
    bin_s = time_bin_s(duration)
    counts = np.zeros((len(ENDPOINT_NAMES) * K.N_OUTCOMES, int(math.ceil(duration / bin_s)), N_BUCKETS), dtype=np.int64)
    stats = np.zeros(K.N_STATS)
    outages = scenario.fault_timeline().outages
    out_start = np.array([o.start_s for o in outages], dtype=np.float64)
    out_end = np.array([o.end_s for o in outages], dtype=np.float64)
    out_mode = np.array([K.M_REFUSED if o.mode is OutageMode.REFUSED else K.M_503 for o in outages], dtype=np.int8)
    retry = agent.retry
    requeue_register = cfg.requeue_bodies
    step = duration / 100
    now, complete = 0.0, False
    try:
        while now < duration:
            now = min(duration, now + step)
            K.run_until(
                now if now < duration else math.inf,
                duration,
                ht,
                ha,
                nxt,
                sent,
                half,
                fails,
                last_visit,
                wfree,
                lock_free,
                cfg.write_lock,
                requeue_register,
                dists,
                emp,
                emp_n,
                agent.poll_interval_s,
                agent.poll_jitter_s,
                agent.request_timeout_s,
                _RETRY[retry.policy],
                retry.base_s,
                retry.cap_s,
                retry.attempts(),
                _LIVENESS[cfg.liveness.write],
                cfg.liveness.coalesce_s,
                out_start,
                out_end,
                out_mode,
                counts,
                bin_s,
                LO_MS,
                math.log1p(REL_WIDTH),
                stats,
            )
            if progress is not None:
                progress(now, duration)
        complete = True
    except KeyboardInterrupt:
        pass
    simulated = duration if complete else now - step
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
    }
    return FastResult(counts, bin_s, simulated, complete, time.perf_counter() - wall0, figures, cfg.workers)
