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
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, cast

import simpy

from sim.model.api import POLL_ENDPOINTS, InMemoryApi
from sim.model.distributions import Constant, Distribution
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
        requeue_bodies: bool = False,
    ) -> None:
        self.env, self.api, self.rng = env, api, rng
        # Asked for every poll: the control plane's method itself, not InMemoryApi's wrapper.
        self._plane, self._project = api.cp, api.project
        self.workers = _Fifo(env, workers)
        self.lock = _Fifo(env, 1) if write_lock else None
        self.service = {name: service_ms(name) for name in ENDPOINTS}
        self.poll_write = service_ms("poll_write")
        self.rtt = rtt_ms
        # Endpoints whose requests queue twice for a worker (`server.requeue_bodies`): once for
        # the headers, once more for the handler after awaiting the body.
        self.requeue = (
            frozenset(n for n, (method, _) in ENDPOINTS.items() if method in ("POST", "PUT"))
            if requeue_bodies
            else frozenset()
        )
        self._half_rtt_const = rtt_ms.value / 2000.0 if isinstance(rtt_ms, Constant) else None

    def half_rtt_s(self) -> float:
        """Half of one round trip drawn for a request: its way out and its way back."""
        return self._half_rtt_const if self._half_rtt_const is not None else self.rtt.sample(self.rng) / 2000.0

    def serve(
        self, call: Call, sent_at: float, half_back_s: float
    ) -> Generator[simpy.Event, Any, tuple[Outcome, float, float]]:
        """Serve a call that reaches the server now; returns (outcome, queue wait s, service s).

        Use with `yield from`. The outcome's latency counts the way back (`half_back_s`), which
        the caller waits out itself, merged with the model's next sleep.
        """
        env = self.env
        arrived = env.now
        wait = self.workers.acquire()
        if wait is not None:
            yield wait
        endpoint = call.endpoint
        if endpoint in self.requeue:
            # Awaiting the body hands the worker to the next in line; this request queues again.
            self.workers.release()
            wait = self.workers.acquire()
            if wait is not None:
                yield wait
        cost = self.service[endpoint]
        writes = endpoint in WRITE_ENDPOINTS
        if endpoint in POLL_ENDPOINTS and self._plane.poll_would_write(self._project, call.source_id, env.now):
            cost, writes = self.poll_write, True
        lock = self.lock if writes else None
        if lock is not None:
            wait = lock.acquire()
            if wait is not None:
                yield wait
        started = env.now
        service = cost.sample(self.rng) / 1000.0
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
            outcome, wait_s, service_s = yield from server.serve(call, sent_at, half_back)
            log.add_call(
                agent_id, call, outcome, sent_at, sent_at, outcome.latency_s * 1e3, wait_s * 1e3, service_s * 1e3
            )
            if self._on_chunk is not None and len(self.log) >= self._chunk_rows:
                self._on_chunk()
            delay = half_back
            intent = model.send(outcome)
            # Drop the last request's leftovers: a frame waiting here is held by every idle agent.
            outcome = wait_s = service_s = sent_at = half_out = call = None  # type: ignore[assignment]


__all__ = ["OPERATOR_ID", "SimServer", "Simulation"]
