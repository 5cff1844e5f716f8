"""Step a sans-I/O model in wall-clock time: `Sleep` waits, `Call` goes to a `send` function.

This is the load test's counterpart of `sim/des/engine.py`: it knows what time it is and
nothing about the domain. `drive` needs only a clock, a sleep and a `send(call, t_sched)`;
the Locust users in `loadtests/users.py` hand it gevent's sleep and a real HTTP request,
and a benchmark or a test can hand it anything else.

Timing: `t_sched` (when the model meant to send) is the scheduled end of the sleeps since the
last outcome, counted from the moment that outcome was handed back, so a late wake-up shows
as lag on one request instead of accumulating over a run.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlencode

from gevent import Timeout

from sim.model.intents import Call, Model, Outcome, Sleep

Send = Callable[[Call, float], Outcome]


@dataclass(slots=True)
class Note:
    """What the records need about one request beyond Locust's own event arguments.

    Carried in the request's `context`: the agent and the `Call` it made, when it meant to
    send it, and the `Outcome` the user decoded from the response (set before Locust fires
    the request event). The recorder turns it into a row with `RequestLog.add_call`, the
    simulation's row builder.
    """

    agent_id: int
    call: Call
    t_sched: float  # epoch seconds
    outcome: Outcome | None = None


def drive(
    model: Model,
    send: Send,
    start_at: float,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Any] = time.sleep,
) -> None:
    """Run `model` until it returns: its first intent is due at `start_at` (epoch seconds)."""
    due = start_at
    try:
        intent = next(model)
        while True:
            if intent.__class__ is Sleep:
                due += intent.seconds
                # Wait out each sleep before the next intent: a model that only sleeps (the operator
                # once its tasks are gone) must still hand the loop to the other users, not spin.
                while (wait := due - clock()) > 0:
                    sleep(wait)
                intent = model.send(None)
                continue
            # A timer may fire a little early on a cached loop clock: wait until really due.
            while (wait := due - clock()) > 0:
                sleep(wait)
            outcome = send(cast(Call, intent), due)  # not a Sleep: the class check above
            due = clock()  # the model learns the outcome now; its next sleep counts from here
            intent = model.send(outcome)
    except StopIteration:  # the model returned
        return


def request_path(call: Call) -> str:
    """The call's path with its parameters percent-encoded.

    An id from a response cannot add a path segment, a query or an authority (`@`, `//`),
    so every request stays on the host the load test was given.
    """
    path = call.template.format_map({k: quote(str(v), safe="") for k, v in call.params.items()})
    return f"{path}?{urlencode(call.query)}" if call.query else path


def transport_error(exc: BaseException | None) -> str:
    """The records' name for a failure to get any response."""
    if isinstance(exc, (Timeout, TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "connection"


def decode(status: int, content: bytes | None, latency_s: float, exc: BaseException | None) -> Outcome:
    """An HTTP exchange as the model sees it: status 0 and an error name when no response came."""
    if status == 0:
        return Outcome(0, None, latency_s, transport_error(exc))
    if not content:
        return Outcome(status, None, latency_s)
    try:
        return Outcome(status, json.loads(content), latency_s)
    except ValueError:  # the model treats an unreadable body like a missing one, and the row says why
        return Outcome(status, None, latency_s, "invalid_json")


def server_ms(header: str | None) -> float:
    """The server's own time for a request from its `Server-Timing` header: the `app` duration
    less the `body` one when there is one (`app;dur=5.1, body;dur=0.4`: the time the app awaited
    the request's body, while the server ran other requests; `sim.server.middleware`). NaN
    without an `app` duration."""
    if not header:
        return float("nan")
    durations: dict[str, float] = {}
    for metric in header.split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "dur":
                try:
                    durations.setdefault(name.strip(), float(value.strip().strip('"')))
                except ValueError:
                    pass
    if "app" not in durations:
        return float("nan")
    return max(durations["app"] - durations.get("body", 0.0), 0.0)
