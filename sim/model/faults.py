"""Faults on the scenario's clock: what the server does wrong, and when.

A scenario's `faults:` list is one timeline for every executor. So far it holds outages: for
`duration_s` seconds from `start_s` the server is down, and every request that reaches it
then fails at once, either as a refused connection (`refused`: nothing listens on the port,
the client sees a TCP reset after one round trip, status 0) or as `503 Service Unavailable`
from a front end that is still up (`http_503`). Requests already inside the server when the
outage begins are served: an outage starts at the door. Neither answer takes a worker, which
is what makes the minute after an outage interesting: the fleet's retries all come back to
an empty server at once.

The simulated server asks `outage_at(t)` of every request when it arrives (a bisection over
the windows, which are in time order and do not overlap). Other fault kinds (added latency,
error rates, a slow store, agents restarting) belong on the same timeline.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sim.model.intents import Outcome


class OutageMode(str, Enum):
    REFUSED = "refused"  # connection refused: status 0, error "refused"
    HTTP_503 = "http_503"  # a front end answers 503 Service Unavailable


UNAVAILABLE_BODY: dict[str, Any] = {"error_code": "SMS.0503", "error_msg": "service unavailable (scenario outage)"}


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


class FaultTimeline:
    """The faults of a run, looked up by time. Outages must be in time order and not overlap."""

    __slots__ = ("outages", "_starts")

    def __init__(self, outages: tuple[Outage, ...] = ()) -> None:
        for a, b in zip(outages, outages[1:]):
            if b.start_s < a.end_s:
                raise ValueError(f"outages overlap or are out of order: {a} then {b}")
        self.outages = outages
        self._starts = [o.start_s for o in outages]

    def __bool__(self) -> bool:
        return bool(self.outages)

    def outage_at(self, t: float) -> Outage | None:
        """The outage going on at `t` (start included, end excluded), or None."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.outages[i].end_s:
            return self.outages[i]
        return None
