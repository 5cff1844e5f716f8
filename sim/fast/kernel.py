"""The compiled event loop of the fast engine: agents polling a FIFO server, in numba.

Every agent has exactly one request on its way at any moment (the loop is closed: an agent
sends again only after its answer, its timeout or its refusal), so the pending events are a
binary min-heap of N (arrival time at the server, agent) pairs, and handling one event
replaces the heap's top with the same agent's next request: one sift-down per request.

The server is computed at arrival, not simulated step by step. Requests reach it in time
order (the heap's order), and a FIFO server with `c` workers serves them in that order, so
the time a request gets a worker is known when it arrives: the earliest time one of the
workers is free, or its arrival (the Kiefer-Wolfowitz recursion for FIFO G/G/c). Writes then
wait for the single write lock while holding their worker, in the same order, as in the SimPy
model (`sim.des.engine`): start = max(worker free, lock free), and both are busy until the
service ends. A request with a body under `requeue` (a registration on a reference-server
worker that awaits its body) gives its worker up once it has one and arrives again at that
moment, behind everything that arrived meanwhile.

All per-agent state lives in arrays of N: what the next request is (register, re-queued
register, poll), when it was sent, its half round trip (drawn once per request, both ways),
the number of failed tries in the current retry sequence, and when the server last recorded a
visit (liveness). Latencies go into log-bucketed histograms per (endpoint, outcome) group and
time bin of the send time; the buckets are those of `sim.records.hist.LogBins`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Distribution kinds (rows of the `dists` table: kind, p0, p1; empirical values in `emp`).
CONSTANT, UNIFORM, EXPONENTIAL, LOGNORMAL, EMPIRICAL = 0, 1, 2, 3, 4
# Rows of the `dists` table.
D_RTT, D_POLL, D_POLL_WRITE, D_REGISTER = 0, 1, 2, 3
# Retry policies, as sim.model.retry.RetryPolicyName.
R_NONE, R_FIXED, R_EXPONENTIAL, R_FULL_JITTER = 0, 1, 2, 3
# Liveness write modes.
L_EVERY_POLL, L_COALESCED, L_OFF = 0, 1, 2
# What an agent sends next.
S_REGISTER, S_REGISTER_AGAIN, S_POLL = 0, 1, 2
# Endpoints and outcomes: histogram group = endpoint * N_OUTCOMES + outcome.
E_POLL, E_REGISTER = 0, 1
O_OK, O_REFUSED, O_UNAVAILABLE, O_TIMEOUT = 0, 1, 2, 3
N_OUTCOMES = 4
# Outage modes (sim.model.faults.OutageMode).
M_REFUSED, M_503 = 0, 1

# Indices of the `stats` accumulator.
ST_EVENTS, ST_BUSY_S, ST_SERVICE_S, ST_LOCK_S, ST_WRITES, ST_POLL_WRITES, ST_REGISTERED, ST_LOST = range(8)
N_STATS = 8


@njit(cache=True)
def sample(dists: np.ndarray, emp: np.ndarray, emp_n: np.ndarray, d: int) -> float:
    """One draw (ms) of distribution row `d`."""
    kind = int(dists[d, 0])
    if kind == CONSTANT:
        return dists[d, 1]
    if kind == UNIFORM:
        return dists[d, 1] + (dists[d, 2] - dists[d, 1]) * np.random.random()
    if kind == EXPONENTIAL:
        return np.random.exponential(dists[d, 1])
    if kind == LOGNORMAL:
        return math.exp(np.random.normal(dists[d, 1], dists[d, 2]))
    return emp[d, int(np.random.random() * emp_n[d])]


@njit(cache=True)
def stationary_offset(interval_s: float, jitter_s: float) -> float:
    """Time to the first poll of an agent already polling at equilibrium (sim.model.agent)."""
    hi = interval_s + jitter_s
    while True:
        x = interval_s + np.random.uniform(-jitter_s, jitter_s)
        if np.random.random() * hi <= x:
            return np.random.random() * x


@njit(cache=True)
def retry_delay(policy: int, base_s: float, cap_s: float, failures: int) -> float:
    """The wait after failure number `failures` (1-based), as sim.model.retry.RetryPolicy.delay_s."""
    if policy == R_FIXED:
        return base_s
    ceiling = min(cap_s, base_s * 2.0 ** (failures - 1))
    if policy == R_FULL_JITTER:
        return np.random.uniform(0.0, ceiling)
    return ceiling


@njit(cache=True)
def bucket(v: float, lo: float, log_step: float, n: int) -> int:
    """The LogBins bucket of `v`: 0 below `lo`, then log-spaced, the last open-ended."""
    if v < lo:
        return 0
    k = int(math.floor(math.log(v / lo) / log_step)) + 1
    return k if k < n - 1 else n - 1


@njit(cache=True)
def replace_top(ht: np.ndarray, ha: np.ndarray, n: int, t: float, a: int) -> None:
    """Put (t, a) in place of the heap's minimum and sift it down."""
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        r = c + 1
        if r < n and ht[r] < ht[c]:
            c = r
        if ht[c] < t:
            ht[i] = ht[c]
            ha[i] = ha[c]
            i = c
        else:
            break
    ht[i] = t
    ha[i] = a


@njit(cache=True)
def heapify(ht: np.ndarray, ha: np.ndarray) -> None:
    """Order (ht, ha) as a binary min-heap on ht."""
    n = ht.shape[0]
    for start in range(n // 2 - 1, -1, -1):
        t, a, i = ht[start], ha[start], start
        while True:
            c = 2 * i + 1
            if c >= n:
                break
            r = c + 1
            if r < n and ht[r] < ht[c]:
                c = r
            if ht[c] < t:
                ht[i] = ht[c]
                ha[i] = ha[c]
                i = c
            else:
                break
        ht[i] = t
        ha[i] = a


@njit(cache=True)
def run_until(
    t_stop: float,
    duration_s: float,
    # the heap of pending arrivals and the agents' state
    ht: np.ndarray,
    ha: np.ndarray,
    nxt: np.ndarray,
    sent: np.ndarray,
    half: np.ndarray,
    fails: np.ndarray,
    last_visit: np.ndarray,
    # the server
    wfree: np.ndarray,
    lock_free: np.ndarray,
    write_lock: bool,
    requeue_register: bool,
    dists: np.ndarray,
    emp: np.ndarray,
    emp_n: np.ndarray,
    # the agents' behaviour
    interval_s: float,
    jitter_s: float,
    timeout_s: float,
    retry_policy: int,
    retry_base_s: float,
    retry_cap_s: float,
    attempts: int,
    live_mode: int,
    coalesce_s: float,
    # faults: outage windows [start, end) and modes, in time order
    out_start: np.ndarray,
    out_end: np.ndarray,
    out_mode: np.ndarray,
    # what is recorded
    counts: np.ndarray,
    bin_s: float,
    lo: float,
    log_step: float,
    stats: np.ndarray,
) -> None:
    """Handle every arrival before `t_stop` (and before `duration_s`); state is kept in the arrays."""
    n = ht.shape[0]
    c = wfree.shape[0]
    n_bins = counts.shape[1]
    n_buckets = counts.shape[2]
    n_out = out_start.shape[0]
    o = 0  # the first outage that may still matter: arrivals come in time order
    while ht[0] < t_stop and ht[0] < duration_s:
        ta = ht[0]
        a = ha[0]
        stats[ST_EVENTS] += 1
        kind = nxt[a]
        endpoint = E_POLL if kind == S_POLL else E_REGISTER
        h = half[a]
        while o < n_out and out_end[o] <= ta:
            o += 1
        outcome = O_OK
        logged_at = ta
        if o < n_out and out_start[o] <= ta:  # an outage: refused at the door after the round trip
            outcome = O_REFUSED if out_mode[o] == M_REFUSED else O_UNAVAILABLE
            back = ta + h
        else:
            # The earliest free worker (few workers: a scan beats a heap).
            w = 0
            for k in range(1, c):
                if wfree[k] < wfree[w]:
                    w = k
            got = max(ta, wfree[w])
            if kind == S_REGISTER and requeue_register:
                # The worker is handed on while the body is awaited: arrive again now.
                wfree[w] = got
                nxt[a] = S_REGISTER_AGAIN
                replace_top(ht, ha, n, got, a)
                continue
            writes = endpoint == E_REGISTER
            d = D_REGISTER
            if endpoint == E_POLL:
                d = D_POLL
                if live_mode == L_EVERY_POLL or (live_mode == L_COALESCED and got - last_visit[a] >= coalesce_s):
                    writes = True
                    d = D_POLL_WRITE
                    stats[ST_POLL_WRITES] += 1
            service = sample(dists, emp, emp_n, d) / 1000.0
            start = got
            if writes:
                stats[ST_WRITES] += 1
                if write_lock:
                    start = max(got, lock_free[0])
                    lock_free[0] = start + service
                    stats[ST_LOCK_S] += service
            done = start + service
            wfree[w] = done
            stats[ST_BUSY_S] += done - got
            stats[ST_SERVICE_S] += service
            back = done + h
            logged_at = done
            if writes:  # the control plane applies it at the end of its service
                last_visit[a] = done
            if back - sent[a] > timeout_s:
                outcome = O_TIMEOUT
                back = sent[a] + timeout_s
                logged_at = back - h
            elif endpoint == E_REGISTER:
                stats[ST_REGISTERED] += 1
        latency = back - sent[a]
        if logged_at < duration_s:  # as the SimPy model, which records a request when it is answered
            b = int(sent[a] / bin_s)
            if b >= n_bins:
                b = n_bins - 1
            counts[endpoint * N_OUTCOMES + outcome, b, bucket(latency * 1000.0, lo, log_step, n_buckets)] += 1
        else:
            stats[ST_LOST] += 1
        # The agent's next request, sent at `t` (it is back at `back`).
        if outcome == O_OK:
            fails[a] = 0
            if endpoint == E_REGISTER:
                nxt[a] = S_POLL
                t = back + stationary_offset(interval_s, jitter_s)
            else:
                t = back + interval_s + np.random.uniform(-jitter_s, jitter_s)
        else:
            fails[a] += 1
            if fails[a] < attempts:
                t = back + retry_delay(retry_policy, retry_base_s, retry_cap_s, fails[a])
            else:  # the tries ran out: the next poll as usual, or (not registered) one interval later
                fails[a] = 0
                if endpoint == E_REGISTER:
                    nxt[a] = S_REGISTER
                    t = back + interval_s
                else:
                    t = back + interval_s + np.random.uniform(-jitter_s, jitter_s)
        if endpoint == E_REGISTER and outcome != O_OK:
            nxt[a] = S_REGISTER
        h = sample(dists, emp, emp_n, D_RTT) / 2000.0
        sent[a] = t
        half[a] = h
        replace_top(ht, ha, n, t + h, a)


@njit(cache=True)
def seed_rng(seed: int) -> None:
    """Seed numba's own generator (separate from numpy's in the interpreter)."""
    np.random.seed(seed)


@njit(cache=True)
def first_halves(dists: np.ndarray, emp: np.ndarray, emp_n: np.ndarray, n: int) -> np.ndarray:
    """The half round trip of every agent's first request."""
    out = np.empty(n)
    for i in range(n):
        out[i] = sample(dists, emp, emp_n, D_RTT) / 2000.0
    return out
