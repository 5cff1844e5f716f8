"""The simulation engine: agents and the operator as SimPy processes around a queueing model of the server.

Each model generator is driven by one SimPy process: `Sleep` becomes `env.timeout`, a `Call`
goes through `SimServer.request`: half the round trip out (the round trip is drawn ONCE per
request and split in two equal halves, so the simulated round trip has the measured
distribution, tail included), a FIFO wait for one of `workers`
workers, (for writes, with `write_lock`) a wait for the single write lock while holding the
worker, as a SQLite server thread would, the endpoint's service time, the control plane
applying the request at the end of its service, and half the round trip back.

A poll is a write when it records the agent's visit (as the scenario's liveness policy says)
or delivers a command for the first time, as on the reference server: it then takes the write
lock and the `poll_write` service time. Whether it writes is asked of the control plane once
the poll has a worker, before its service begins (a pure look-up); the poll itself is applied
at the end of its service, as every request is.

The queues are hand-rolled (a busy count and a deque of waiting events) rather than
`simpy.Resource`: with nobody waiting a request costs no event at all, which keeps 10^5-agent
runs fast. The order of service is the same FIFO.

Timeouts and outages, as an agent's HTTP client sees them: an answer that would reach the
agent more than `timeout_s` after it sent the request is a timeout (status 0, error
"timeout", latency `timeout_s`); the server still serves the request to the end, as a real one
does for a client that has gone. A request that must queue is handed to a process of its own,
which the agent waits for with the timeout beside it; one that finds a worker (and the lock)
free and whose service ends in time is served in the agent's own process, with no extra
event. During an outage of the scenario's fault timeline (`sim.model.faults`) a request
fails at the door after its round trip, without a worker; in an error-rate window a request
drawn for an error does the same with the window's status; in a latency window a request waits
its added delay on arrival, before it queues (the delay counts towards its timeout). In a
slow-store window a store transaction (a write; a read too unless the fault is `writes_only`)
whose service starts in the window takes the fault's added time more, inside its service:
holding its worker and, for a write, the write lock.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, cast

import simpy

from sim.model.api import POLL_ENDPOINTS, InMemoryApi
from sim.model.distributions import Constant, Distribution
from sim.model.faults import ErrorRate, FaultTimeline, Latency, Outage, SlowStore
from sim.model.intents import ENDPOINTS, WRITE_ENDPOINTS, Call, Model, Outcome, Sleep
from sim.records import OPERATOR_ID, RequestLog

_Proc = Generator[simpy.Event, Any, Any]


class _Fifo:
    """`capacity` servers with a FIFO queue; `acquire()` is an event only when one must wait."""

    __slots__ = ("env", "capacity", "busy", "waiting")

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        self.env, self.capacity, self.busy = env, capacity, 0
        self.waiting: deque[simpy.Event] = deque()

    def acquire(self) -> simpy.Event | None:
        if self.busy < self.capacity:
            self.busy += 1
            return None
        event = self.env.event()
        self.waiting.append(event)
        return event

    def release(self) -> None:
        if self.waiting:  # hand the server straight to the next in line
            self.waiting.popleft().succeed()
        else:
            self.busy -= 1

    def acquire_behind(self, share: float) -> simpy.Event | None:
        """`acquire()` for one that waits behind only the oldest `share` of those waiting (at
        least one of them, when any wait): ahead of the latest arrivals, which have not reached
        the place it queues at (a body's `receive()` resumes on the worker's event loop, where
        fresh requests arrive only through granian's hand-over)."""
        if share >= 1.0 or len(self.waiting) < 2:
            return self.acquire()
        event = self.env.event()
        self.waiting.insert(max(1, math.ceil(share * len(self.waiting))), event)
        return event


class SimServer:
    """The simulated SMS server: workers, per-endpoint service times (ms), a write lock, a round trip (ms)."""

    def __init__(
        self,
        env: simpy.Environment,
        api: InMemoryApi,
        rng: random.Random,
        *,
        workers: int,
        service_ms: Callable[[str], Distribution],
        write_lock: bool,
        rtt_ms: Distribution,
        requeue_bodies: int = 0,
        requeue_at: float = 1.0,
        idle_start_ms: float = 0.0,
        timeout_s: float = math.inf,
        faults: FaultTimeline | None = None,
    ) -> None:
        self.env, self.api, self.rng = env, api, rng
        self.timeout_s = timeout_s
        self.faults = faults if faults else None  # None: no look-up per request
        # Asked for every poll: the control plane's method itself, not InMemoryApi's wrapper.
        self._plane, self._project = api.cp, api.project
        self.workers = _Fifo(env, workers)
        self.lock = _Fifo(env, 1) if write_lock else None
        self.service = {name: service_ms(name) for name in ENDPOINTS}
        self.poll_write = service_ms("poll_write")
        self.rtt = rtt_ms
        # Endpoints whose requests queue again for a worker (`server.requeue_bodies` times): once
        # for the headers, once more for the handler after each await of the body.
        self.requeue = (
            frozenset(n for n, (method, _) in ENDPOINTS.items() if method in ("POST", "PUT"))
            if requeue_bodies
            else frozenset()
        )
        self.requeue_passes = int(requeue_bodies)
        self.requeue_at = float(requeue_at)  # the share of those waiting a re-queued body goes behind
        self.idle_start_s = idle_start_ms / 1000.0  # more service for a request that found a worker free
        self._half_rtt_const = rtt_ms.value / 2000.0 if isinstance(rtt_ms, Constant) else None

    def half_rtt_s(self) -> float:
        """Half of one round trip drawn for a request: its way out and its way back."""
        return self._half_rtt_const if self._half_rtt_const is not None else self.rtt.sample(self.rng) / 2000.0

    def _cost(self, call: Call) -> tuple[Distribution, bool]:
        """The service time of `call` now, and whether it writes (then it takes the lock, if any)."""
        endpoint = call.endpoint
        if endpoint in POLL_ENDPOINTS and self._plane.poll_would_write(self._project, call.source_id, self.env.now):
            return self.poll_write, True
        return self.service[endpoint], endpoint in WRITE_ENDPOINTS

    def _slow_store_s(self, writes: bool) -> float:
        """What a slow store adds to a transaction (a write, or a read) whose service starts now."""
        assert self.faults is not None
        fault = self.faults.fault_at(self.env.now)
        if isinstance(fault, SlowStore) and fault.applies(writes):
            return fault.added_ms.sample(self.rng) / 1000.0
        return 0.0

    def serve(
        self, call: Call, sent_at: float, half_back_s: float
    ) -> Generator[simpy.Event, Any, tuple[Outcome, float, float]]:
        """Serve a call that reaches the server now; returns (outcome, queue wait s, service s).

        Use with `yield from`. The outcome's latency counts the way back (`half_back_s`), which
        the caller waits out itself, merged with the model's next sleep. A timed-out call's
        outcome is the timeout, with NaN wait and service (the server's work goes on).
        """
        env = self.env
        workers = self.workers
        if workers.busy < workers.capacity and call.endpoint not in self.requeue:
            cost, writes = self._cost(call)
            lock = self.lock if writes else None
            if lock is None or lock.busy == 0:  # nothing to wait for: serve in the agent's process
                service = cost.sample(self.rng) / 1000.0 + self.idle_start_s
                if self.faults is not None:
                    service += self._slow_store_s(writes)
                if env.now + service + half_back_s - sent_at <= self.timeout_s:
                    workers.acquire()
                    if lock is not None:
                        lock.acquire()
                    if service > 0:
                        yield env.timeout(service)
                    outcome = self.api.handle(call, env.now, env.now + half_back_s - sent_at)
                    if lock is not None:
                        lock.release()
                    workers.release()
                    return outcome, 0.0, service
        served = env.process(self._queued(call, sent_at, half_back_s))
        # The answer must leave the server `half_back_s` before the deadline to reach the agent in time.
        timer = env.timeout(max(0.0, sent_at + self.timeout_s - half_back_s - env.now))
        yield served | timer
        if served.triggered:
            return cast(tuple[Outcome, float, float], served.value)
        return Outcome(0, None, self.timeout_s, "timeout"), math.nan, math.nan

    def _queued(self, call: Call, sent_at: float, half_back_s: float) -> _Proc:
        """A call that waits for a worker (and, if it writes, the lock) in FIFO order, then is served."""
        env = self.env
        arrived = env.now
        wait = self.workers.acquire()
        woke = self.idle_start_s if wait is None else 0.0  # it found a worker free
        if wait is not None:
            yield wait
        if call.endpoint in self.requeue:
            # Each await of the body hands the worker to the next in line; this request queues again.
            for _ in range(self.requeue_passes):
                self.workers.release()
                wait = self.workers.acquire_behind(self.requeue_at)
                if wait is not None:
                    yield wait
        cost, writes = self._cost(call)
        lock = self.lock if writes else None
        if lock is not None:
            wait = lock.acquire()
            if wait is not None:
                yield wait
        started = env.now
        service = cost.sample(self.rng) / 1000.0 + woke
        if self.faults is not None:
            service += self._slow_store_s(writes)
        if service > 0:
            yield env.timeout(service)
        # The control plane applies the request at the end of its service.
        outcome = self.api.handle(call, env.now, env.now + half_back_s - sent_at)
        if lock is not None:
            lock.release()
        self.workers.release()
        return outcome, started - arrived, service


class Simulation:
    """Runs models as SimPy processes against a SimServer, recording every request into `log`."""

    def __init__(
        self,
        env: simpy.Environment,
        server: SimServer,
        log: RequestLog,
        on_chunk: Callable[[], None] | None = None,
        chunk_rows: int = 500_000,
    ) -> None:
        self.env, self.server, self.log = env, server, log
        self._on_chunk, self._chunk_rows = on_chunk, chunk_rows

    def spawn(self, agent_id: int, model: Model, start_s: float = 0.0) -> None:
        self.env.process(self._drive(agent_id, model, start_s))

    def _drive(self, agent_id: int, model: Model, start_s: float) -> _Proc:
        """Step one model. Its next intent after a Sleep cannot depend on anything that happens
        during the sleep (a model learns only from outcomes), so sleeps, the way out to the
        server and the way back are merged into one timeout: two events per request, not four."""
        # No bound methods in this frame (model.send, log.add_call): 60-70 B each, per idle agent.
        env, server, log = self.env, self.server, self.log
        intent = next(model)
        delay = start_s
        while True:
            if intent.__class__ is Sleep:
                delay += intent.seconds
                intent = model.send(None)
                if intent.__class__ is Sleep:  # sleep after sleep (an idle operator): let time pass now
                    yield env.timeout(delay)
                    delay = 0.0
                continue
            call = cast(Call, intent)  # not a Sleep: the class check above
            # One draw for both ways: a slow round trip (a busy client, a GC pause) is slow both
            # ways, and the request's round trip then has the measured distribution, tail included.
            half_out = half_back = server.half_rtt_s()
            if delay + half_out > 0:
                yield env.timeout(delay + half_out)
            sent_at = env.now - half_out
            fault = server.faults.fault_at(env.now) if server.faults is not None else None
            late = False
            if isinstance(fault, Latency):  # delayed on arrival (no worker held), then served
                deadline = sent_at + server.timeout_s - half_back
                yield env.timeout(min(fault.added_ms.sample(server.rng) / 1000.0, max(0.0, deadline - env.now)))
                fault, late = None, env.now >= deadline
            elif isinstance(fault, ErrorRate) and server.rng.random() >= fault.fraction:
                fault = None  # not drawn for an injected error: served as usual
            if isinstance(
                fault, (Outage, ErrorRate)
            ):  # refused or answered at the door: no worker, an answer after the round trip
                outcome, wait_s, service_s = fault.outcome(half_out + half_back), math.nan, math.nan
            elif late:  # the added latency outlasted the client's timeout
                outcome, wait_s, service_s = Outcome(0, None, server.timeout_s, "timeout"), math.nan, math.nan
            else:
                # A timeout is seen at the deadline, `half_back` after the server gave up on in time.
                outcome, wait_s, service_s = yield from server.serve(call, sent_at, half_back)
            log.add_call(
                agent_id, call, outcome, sent_at, sent_at, outcome.latency_s * 1e3, wait_s * 1e3, service_s * 1e3
            )
            if self._on_chunk is not None and len(self.log) >= self._chunk_rows:
                self._on_chunk()
            delay = half_back
            intent = model.send(outcome)
            # Drop the last request's leftovers: a frame waiting here is held by every idle agent.
            outcome = wait_s = service_s = sent_at = half_out = call = fault = None  # type: ignore[assignment]


__all__ = ["OPERATOR_ID", "SimServer", "Simulation"]
