"""The compiled event loop of the fast engine: agents polling a FIFO server, in numba.

Every agent has exactly one request on its way at any moment (the loop is closed: an agent
sends again only after its answer, its timeout or its refusal), so a pending event is an
agent, keyed by the time its next request reaches the server.

The pending events are a calendar queue (Brown 1988): time is cut into buckets of `width`
seconds, bucket k holding, as a linked list through the agents, the events of
[k width, (k+1) width) and of the same slot a "year" (W buckets) or more later. The loop takes
the events of the current bucket that fall in it, sorts them (there are few: the width is
chosen for a couple of events a bucket), handles them in time order, and moves on; an event
a handled one schedules inside the current bucket joins the sorted run, any later one is
linked into its bucket. With a million agents a binary heap costs a cache miss per level
(about twenty per event); here an event costs about two: its bucket's head and its agent.

The server is computed at arrival, not simulated step by step. Requests reach it in time
order, and a FIFO server with `c` workers serves them in that order, so the time a request
gets a worker is known when it arrives: the earliest time one of the workers is free (the top
of a small heap of the workers' free times), or its arrival (the Kiefer-Wolfowitz recursion
for FIFO G/G/c). Writes then wait for the single write lock while holding their worker, in
the same order, as in the SimPy model (`sim.des.engine`): start = max(worker free, lock
free), and both are busy until the service ends. A request with a body under `requeue` (a
registration on a reference-server worker that awaits its body) gives its worker up once it
has one and arrives again at that moment, behind everything that arrived meanwhile.

Each agent's state is one row of `agents` (64 bytes: one cache line): its event time and
link, what it sends next (register, re-queued register, poll), when it sent it, its half
round trip (drawn once per request, both ways), the failed tries of its current retry
sequence, and when the server last recorded its visit (liveness). Latencies go into
log-bucketed histograms per (endpoint, outcome) group and time bin of the send time; the
buckets are those of `sim.records.hist.LogBins`.
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
R_NONE, R_FIXED, R_EXPONENTIAL, R_FULL_JITTER, R_DECORRELATED = 0, 1, 2, 3, 4
# Liveness write modes.
L_EVERY_POLL, L_COALESCED, L_OFF = 0, 1, 2
# What an agent sends next (a re-queued register: whether its first pass found a worker free).
S_REGISTER, S_REGISTER_AGAIN, S_POLL, S_REGISTER_AGAIN_WOKE = 0, 1, 2, 3
# Endpoints and outcomes: histogram group = endpoint * N_OUTCOMES + outcome.
E_POLL, E_REGISTER = 0, 1
O_OK, O_REFUSED, O_UNAVAILABLE, O_TIMEOUT = 0, 1, 2, 3
N_OUTCOMES = 4
# Outage modes (sim.model.faults.OutageMode).
M_REFUSED, M_503 = 0, 1

# Columns of the `agents` table (float64; links and small integers are exact in a double).
A_EVENT, A_LINK, A_NEXT, A_SENT, A_HALF, A_FAILS, A_VISIT, A_WAIT = range(8)  # A_WAIT: the last retry wait
AGENT_COLUMNS = 8  # 64 bytes a row
NO_LINK = -1.0

# Entries of the `params` vector.
(
    P_DURATION,
    P_INTERVAL,
    P_JITTER,
    P_TIMEOUT,
    P_RETRY_POLICY,
    P_RETRY_BASE,
    P_RETRY_CAP,
    P_ATTEMPTS,
    P_LIVE_MODE,
    P_COALESCE,
    P_WRITE_LOCK,
    P_REQUEUE_REGISTER,
    P_BIN_S,
    P_LO,
    P_LOG_STEP,
    P_WIDTH,
    P_IDLE_START,
) = range(17)
N_PARAMS = 17

# Entries of the `stats` accumulator (and of the loop's own state at the end).
(
    ST_EVENTS,
    ST_BUSY_S,
    ST_SERVICE_S,
    ST_LOCK_S,
    ST_WRITES,
    ST_POLL_WRITES,
    ST_REGISTERED,
    ST_LOST,
    ST_BUCKET,
    ST_LOCK_FREE,
    ST_MAX_RUN,
) = range(11)
N_STATS = 11


@njit(cache=True, inline="always")
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


@njit(cache=True, inline="always")
def stationary_offset(interval_s: float, jitter_s: float) -> float:
    """Time to the first poll of an agent already polling at equilibrium (sim.model.agent)."""
    hi = interval_s + jitter_s
    while True:
        x = interval_s + np.random.uniform(-jitter_s, jitter_s)
        if np.random.random() * hi <= x:
            return np.random.random() * x


@njit(cache=True, inline="always")
def retry_delay(policy: int, base_s: float, cap_s: float, failures: int, previous_s: float) -> float:
    """The wait after failure number `failures` (1-based), as sim.model.retry.RetryPolicy.delay_s."""
    if policy == R_FIXED:
        return base_s
    if policy == R_DECORRELATED:
        return min(cap_s, np.random.uniform(base_s, 3.0 * max(previous_s, base_s)))
    ceiling = min(cap_s, base_s * 2.0 ** (failures - 1))
    if policy == R_FULL_JITTER:
        return np.random.uniform(0.0, ceiling)
    return ceiling


@njit(cache=True, inline="always")
def bucket(v: float, lo: float, log_step: float, n: int) -> int:
    """The LogBins bucket of `v`: 0 below `lo`, then log-spaced, the last open-ended."""
    if v < lo:
        return 0
    k = int(math.floor(math.log(v / lo) / log_step)) + 1
    return k if k < n - 1 else n - 1


@njit(cache=True, inline="always")
def within(t0: float, t1: float, end: float) -> float:
    """The length of [t0, t1) before `end`."""
    return max(0.0, min(t1, end) - min(t0, end))


@njit(cache=True, inline="always")
def worker_free_at(wfree: np.ndarray, t: float) -> None:
    """The earliest-free worker (the heap's top) is next free at `t`: sift it down."""
    c = wfree.shape[0]
    i = 0
    while True:
        k = 2 * i + 1
        if k >= c:
            break
        if k + 1 < c and wfree[k + 1] < wfree[k]:
            k += 1
        if wfree[k] < t:
            wfree[i] = wfree[k]
            i = k
        else:
            break
    wfree[i] = t


@njit(cache=True, inline="always")
def link(agents: np.ndarray, heads: np.ndarray, width: float, a: int, t: float) -> None:
    """Put agent `a`'s event at `t` into its bucket of the calendar."""
    slot = int(t / width) & (heads.shape[0] - 1)
    agents[a, A_EVENT] = t
    agents[a, A_LINK] = heads[slot]
    heads[slot] = a


@njit(cache=True, inline="always")
def handle(
    a: int,
    ta: float,
    p: np.ndarray,
    agents: np.ndarray,
    wfree: np.ndarray,
    dists: np.ndarray,
    emp: np.ndarray,
    emp_n: np.ndarray,
    outage: int,
    counts: np.ndarray,
    stats: np.ndarray,
) -> float:
    """Agent `a`'s request reaches the server at `ta` (`outage`: -1, or the mode of the outage on
    then); returns when its next request reaches the server."""
    duration = p[P_DURATION]
    stats[ST_EVENTS] += 1
    kind = int(agents[a, A_NEXT])
    endpoint = E_POLL if kind == S_POLL else E_REGISTER
    h = agents[a, A_HALF]
    sent = agents[a, A_SENT]
    outcome = O_OK
    logged_at = ta
    if outage >= 0:  # refused at the door after the round trip, no worker
        outcome = O_REFUSED if outage == M_REFUSED else O_UNAVAILABLE
        back = ta + h
    else:
        got = max(ta, wfree[0])
        # It found a worker free: woken from idle (`server.idle_start_ms`). A re-queued register
        # was judged on its first pass, as in the SimPy engine (on its second its worker is free).
        woke = wfree[0] <= ta if kind == S_REGISTER or kind == S_POLL else kind == S_REGISTER_AGAIN_WOKE
        if kind == S_REGISTER and p[P_REQUEUE_REGISTER] != 0.0:
            # The worker is handed on while the body is awaited: arrive again now.
            worker_free_at(wfree, got)
            agents[a, A_NEXT] = S_REGISTER_AGAIN_WOKE if woke else S_REGISTER_AGAIN
            return got
        writes = endpoint == E_REGISTER
        d = D_REGISTER
        if endpoint == E_POLL:
            d = D_POLL
            live = int(p[P_LIVE_MODE])
            if live == L_EVERY_POLL or (live == L_COALESCED and got - agents[a, A_VISIT] >= p[P_COALESCE]):
                writes = True
                d = D_POLL_WRITE
                stats[ST_POLL_WRITES] += 1
        service = sample(dists, emp, emp_n, d) / 1000.0
        if woke:
            service += p[P_IDLE_START]
        start = got
        if writes:
            stats[ST_WRITES] += 1
            if p[P_WRITE_LOCK] != 0.0:
                start = max(got, stats[ST_LOCK_FREE])
                stats[ST_LOCK_FREE] = start + service
                stats[ST_LOCK_S] += within(start, start + service, duration)
        done = start + service
        worker_free_at(wfree, done)
        # Busy time within the run only: past capacity the queue reaches beyond its end.
        stats[ST_BUSY_S] += within(got, done, duration)
        stats[ST_SERVICE_S] += within(start, done, duration)
        back = done + h
        logged_at = done
        if writes:  # the control plane applies it at the end of its service
            agents[a, A_VISIT] = done
        if back - sent > p[P_TIMEOUT]:
            outcome = O_TIMEOUT
            back = sent + p[P_TIMEOUT]
            logged_at = back - h
        elif endpoint == E_REGISTER:
            stats[ST_REGISTERED] += 1
    if logged_at < duration:  # as the SimPy model, which records a request when it is answered
        b = int(sent / p[P_BIN_S])
        if b >= counts.shape[1]:
            b = counts.shape[1] - 1
        k = bucket((back - sent) * 1000.0, p[P_LO], p[P_LOG_STEP], counts.shape[2])
        counts[endpoint * N_OUTCOMES + outcome, b, k] += 1
    else:
        stats[ST_LOST] += 1
    # The agent's next request, sent at `t` (it is back at `back`).
    interval, jitter = p[P_INTERVAL], p[P_JITTER]
    if outcome == O_OK:
        agents[a, A_FAILS] = agents[a, A_WAIT] = 0.0
        if endpoint == E_REGISTER:
            agents[a, A_NEXT] = S_POLL
            t = back + stationary_offset(interval, jitter)
        else:
            t = back + interval + np.random.uniform(-jitter, jitter)
    else:
        fails = agents[a, A_FAILS] + 1.0
        if endpoint == E_REGISTER:
            agents[a, A_NEXT] = S_REGISTER
        if fails < p[P_ATTEMPTS]:
            agents[a, A_FAILS] = fails
            wait = retry_delay(int(p[P_RETRY_POLICY]), p[P_RETRY_BASE], p[P_RETRY_CAP], int(fails), agents[a, A_WAIT])
            agents[a, A_WAIT] = wait
            t = back + wait
        else:  # the tries ran out: the next poll as usual, or (not registered) one interval later
            agents[a, A_FAILS] = agents[a, A_WAIT] = 0.0
            if endpoint == E_REGISTER:
                t = back + interval
            else:
                t = back + interval + np.random.uniform(-jitter, jitter)
    h = sample(dists, emp, emp_n, D_RTT) / 2000.0
    agents[a, A_SENT] = t
    agents[a, A_HALF] = h
    return t + h


@njit(cache=True, inline="always")
def _insert_sorted(run_t: np.ndarray, run_a: np.ndarray, lo: int, hi: int, t: float, a: int) -> None:
    """Insert (t, a) into the sorted run [lo, hi) (which then ends at hi + 1); from the end, as a
    new event is usually the latest."""
    i = hi
    while i > lo and run_t[i - 1] > t:
        i -= 1
    for j in range(hi, i, -1):
        run_t[j] = run_t[j - 1]
        run_a[j] = run_a[j - 1]
    run_t[i] = t
    run_a[i] = a


@njit(cache=True)
def run_until(
    t_stop: float,
    p: np.ndarray,
    agents: np.ndarray,
    heads: np.ndarray,
    run_t: np.ndarray,
    run_a: np.ndarray,
    wfree: np.ndarray,
    dists: np.ndarray,
    emp: np.ndarray,
    emp_n: np.ndarray,
    out_start: np.ndarray,
    out_end: np.ndarray,
    out_mode: np.ndarray,
    counts: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Handle every event of the buckets that start before `t_stop` (and before the run's end).

    The loop's position (the next bucket) is kept in `stats[ST_BUCKET]`, the write lock's
    free time in `stats[ST_LOCK_FREE]`, so that a run goes on across calls."""
    width = p[P_WIDTH]
    duration = p[P_DURATION]
    n_slots = heads.shape[0]
    n_out = out_start.shape[0]
    k = int(stats[ST_BUCKET])
    o = 0
    while k * width < t_stop and k * width < duration:
        slot = k & (n_slots - 1)
        # Take this bucket's events out of the list; the later years' stay.
        n = 0
        keep = -1
        a = heads[slot]
        while a >= 0:
            after = int(agents[a, A_LINK])
            t = agents[a, A_EVENT]
            if int(t / width) <= k and t < duration:  # this year's (an event is never in the past)
                run_t[n] = t
                run_a[n] = a
                n += 1
            else:
                agents[a, A_LINK] = keep
                keep = a
            a = after
        heads[slot] = keep
        if n > 32:  # a storm in one bucket (all agents at once, say)
            order = np.argsort(run_t[:n], kind="mergesort")
            run_t[:n] = run_t[:n][order]
            run_a[:n] = run_a[:n][order]
        else:  # the usual couple of events: an insertion sort, no allocation
            for j in range(1, n):
                tj, aj = run_t[j], run_a[j]
                m = j - 1
                while m >= 0 and run_t[m] > tj:
                    run_t[m + 1] = run_t[m]
                    run_a[m + 1] = run_a[m]
                    m -= 1
                run_t[m + 1] = tj
                run_a[m + 1] = aj
        if n > stats[ST_MAX_RUN]:
            stats[ST_MAX_RUN] = n
        i = 0
        while i < n:
            ta, a = run_t[i], run_a[i]
            i += 1
            while o < n_out and out_end[o] <= ta:
                o += 1
            mode = int(out_mode[o]) if o < n_out and out_start[o] <= ta else -1
            t = handle(a, ta, p, agents, wfree, dists, emp, emp_n, mode, counts, stats)
            if int(t / width) <= k and t < duration:  # still in this bucket: joins the sorted run
                if n == run_t.shape[0]:  # the run fills its array (a whole fleet in one bucket):
                    live = n - i  # drop the handled events in front (i >= 1: one was just handled)
                    run_t[:live] = run_t[i:n].copy()
                    run_a[:live] = run_a[i:n].copy()
                    n, i = live, 0
                _insert_sorted(run_t, run_a, i, n, t, a)
                n += 1
            else:
                link(agents, heads, width, a, t)
        k += 1
    stats[ST_BUCKET] = k


@njit(cache=True)
def seed_rng(seed: int) -> None:
    """Seed numba's own generator (separate from numpy's in the interpreter)."""
    np.random.seed(seed)


@njit(cache=True)
def start(
    agents: np.ndarray, heads: np.ndarray, width: float, dists: np.ndarray, emp: np.ndarray, emp_n: np.ndarray
) -> None:
    """Draw every agent's first half round trip and link its first event (registration, at A_SENT)."""
    for a in range(agents.shape[0]):
        h = sample(dists, emp, emp_n, D_RTT) / 2000.0
        agents[a, A_HALF] = h
        link(agents, heads, width, a, agents[a, A_SENT] + h)
