"""Faults on the scenario's clock: what the server does wrong, and when.

A scenario's `faults:` list is one timeline for every executor. So far it holds outages: for
`duration_s` seconds from `start_s` the server is down, and every request that reaches it
then fails at once, either as a refused connection (`refused`: nothing listens on the port,
the client sees a TCP reset after one round trip, status 0) or as `503 Service Unavailable`
from a front end that is still up (`http_503`). Requests already inside the server when the
outage begins are served: an outage starts at the door. Neither answer takes a worker, which
is what makes the minute after an outage interesting: the fleet's retries all come back to
an empty server at once.

Two more kinds share the timeline. `Latency` adds a sampled delay (ms) to every request that
arrives in its window, before the request queues for a worker (a slow network or proxy in
front of the server: the delay holds no worker). `ErrorRate` answers a `fraction` of the
requests that arrive in its window with `status` (500 or 503) at the door, again without a
worker, as a failing front end or a sick replica behind a balancer would.

`SlowStore` is the one fault inside the server: for its window every store transaction
(writes; reads too unless `writes_only`) takes `added_ms` (sampled) longer, and the request
holds its worker, and a write the write lock, for all of it, as a database that has become
slow (a full disk, a vacuum, a failover) holds the handlers waiting on it. Unlike `Latency` it
therefore queues the requests behind it: with a write lock, a slow write delays every poll
that must write after it. A request meets the fault its transaction begins in (the simulated
server asks when its service starts; the reference server sleeps inside the transaction).

One kind happens to the agents, not to the server: `AgentRestart` restarts a `fraction` of
the fleet, each agent at a moment drawn uniformly in its window (`sim.fleet` draws who and
when, seeded per agent, so a simulation and a load test restart the same agents at the same
times). A restarted agent is gone for `down_s` (it sends nothing), then registers again with
the id it keeps on disk and polls at once; it keeps what a real agent keeps on disk (its
source id, the task it runs, its unsent report) and loses what it held in memory (an upload
under way, which command it last saw). The agent model carries it out (`sim.model.agent`), so
both executors apply it the same way; it may overlap the server's faults (a power cut takes
both), and it is not part of the server's timeline.

The simulated server asks `fault_at(t)` of every request when it arrives (a bisection over
the windows, which are in time order and do not overlap). The load test's server holds the
same faults as a `state()` mapping set through its admin endpoint; `FaultTimeline.changes()`
lists the times at which that state changes, which `smsload load` walks on the scenario's clock.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sim.model.distributions import Distribution
from sim.model.intents import Outcome


class OutageMode(str, Enum):
    REFUSED = "refused"  # connection refused: status 0, error "refused"
    HTTP_503 = "http_503"  # a front end answers 503 Service Unavailable


UNAVAILABLE_BODY: dict[str, Any] = {"error_code": "SMS.0503", "error_msg": "service unavailable (scenario outage)"}
INJECTED_BODY: dict[str, Any] = {"error_code": "SMS.0500", "error_msg": "injected error (scenario error_rate)"}
NO_FAULT: dict[str, Any] = {
    "outage": None,
    "latency_ms": None,
    "error_rate": 0.0,
    "error_status": 503,
    "slow_store": None,  # or {"added_ms": DIST, "writes_only": bool}
}


@dataclass(frozen=True, slots=True)
class Outage:
    """The server is down from `start_s` for `duration_s` seconds; requests fail as `mode` says."""

    start_s: float
    duration_s: float
    mode: OutageMode = OutageMode.REFUSED

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def outcome(self, latency_s: float) -> Outcome:
        """What a request that reaches the server during this outage gets, after `latency_s`."""
        if self.mode is OutageMode.REFUSED:
            return Outcome(0, None, latency_s, "refused")
        return Outcome(503, UNAVAILABLE_BODY, latency_s)

    def state(self) -> dict[str, Any]:
        """This fault as the load test's server holds it (its admin endpoint's body)."""
        return {**NO_FAULT, "outage": self.mode.value}


@dataclass(frozen=True, slots=True)
class Latency:
    """From `start_s` for `duration_s` seconds every request arriving is delayed by `added_ms` (sampled)."""

    start_s: float
    duration_s: float
    added_ms: Distribution

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def state(self) -> dict[str, Any]:
        return {**NO_FAULT, "latency_ms": self.added_ms.to_spec()}


@dataclass(frozen=True, slots=True)
class ErrorRate:
    """From `start_s` for `duration_s` seconds a `fraction` of the requests arriving get `status` at once."""

    start_s: float
    duration_s: float
    fraction: float
    status: int = 503

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def outcome(self, latency_s: float) -> Outcome:
        """What a request picked for an injected error gets, after `latency_s`."""
        return Outcome(self.status, UNAVAILABLE_BODY if self.status == 503 else INJECTED_BODY, latency_s)

    def state(self) -> dict[str, Any]:
        return {**NO_FAULT, "error_rate": self.fraction, "error_status": self.status}


@dataclass(frozen=True, slots=True)
class SlowStore:
    """From `start_s` for `duration_s` seconds every store write (and read, unless `writes_only`) takes
    `added_ms` (sampled) longer, holding its worker (and a write the write lock) all the while."""

    start_s: float
    duration_s: float
    added_ms: Distribution
    writes_only: bool = True

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def applies(self, writes: bool) -> bool:
        """Whether a transaction (a write, or a read) is slowed."""
        return writes or not self.writes_only

    def state(self) -> dict[str, Any]:
        return {**NO_FAULT, "slow_store": {"added_ms": self.added_ms.to_spec(), "writes_only": self.writes_only}}


Fault = Outage | Latency | ErrorRate | SlowStore


@dataclass(frozen=True, slots=True)
class AgentRestart:
    """From `start_s` for `duration_s` seconds a `fraction` of the agents restart, each down `down_s`."""

    start_s: float
    duration_s: float
    fraction: float
    down_s: float = 5.0

    def draw(self, rng: random.Random) -> float | None:
        """When one agent restarts (run time, s), or None if it is not among the `fraction`."""
        if rng.random() >= self.fraction:
            return None
        return self.start_s + rng.random() * self.duration_s


class FaultTimeline:
    """The faults of a run, looked up by time. Faults must be in time order and not overlap."""

    __slots__ = ("faults", "outages", "_starts")

    def __init__(self, faults: tuple[Fault, ...] = ()) -> None:
        for a, b in zip(faults, faults[1:]):
            if b.start_s < a.end_s:
                raise ValueError(f"faults overlap or are out of order: {a} then {b}")
        self.faults = faults
        self.outages = tuple(f for f in faults if isinstance(f, Outage))
        self._starts = [f.start_s for f in faults]

    def __bool__(self) -> bool:
        return bool(self.faults)

    def fault_at(self, t: float) -> Fault | None:
        """The fault going on at `t` (start included, end excluded), or None."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.faults[i].end_s:
            return self.faults[i]
        return None

    def outage_at(self, t: float) -> Outage | None:
        """The outage going on at `t` (start included, end excluded), or None."""
        fault = self.fault_at(t)
        return fault if isinstance(fault, Outage) else None

    def changes(self) -> list[tuple[float, dict[str, Any]]]:
        """(time s, server fault state from then on), in time order: what `smsload load` sets when."""
        out: list[tuple[float, dict[str, Any]]] = []
        for fault in self.faults:
            if out and out[-1][0] == fault.start_s:
                out.pop()  # the previous fault ends as this one starts
            out.append((fault.start_s, fault.state()))
            out.append((fault.end_s, dict(NO_FAULT)))
        return out
