"""The load test's pure parts: stepping a model in wall-clock time, paths, headers, arrivals.

Nothing here imports Locust: that would patch the whole test process for gevent.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from gevent import Timeout

from loadtests.driver import decode, drive, request_path, server_ms, transport_error
from loadtests.timeline import agents_due
from sim.fleet import arrival_s
from sim.model.intents import Call, Model, Outcome, Sleep, record_annotations
from sim.scenario import load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"


class Clock:
    """Time that passes only when slept through, or when a request takes it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_drive_sends_each_call_when_its_sleeps_end_and_hands_back_outcomes() -> None:
    clock = Clock(1000.0)
    seen: list[Any] = []

    def model() -> Model:
        first = yield Call("register", body={"name": "a"})
        seen.append(first.status)
        yield Sleep(2.0)
        yield Sleep(0.5)  # consecutive sleeps add up
        yield Call("poll", source_id="s1")
        yield Call("poll", source_id="s1")  # straight after: due as soon as the last answer came

    sent: list[tuple[str, float, float]] = []

    def send(call: Call, t_sched: float) -> Outcome:
        sent.append((call.endpoint, t_sched, clock.now))
        clock.now += 0.25  # the request takes a quarter second
        return Outcome(200, {}, 0.25)

    drive(model(), send, 1003.0, clock=clock, sleep=clock.sleep)
    assert seen == [200]
    assert sent == [("register", 1003.0, 1003.0), ("poll", 1005.75, 1005.75), ("poll", 1006.0, 1006.0)]


def test_a_late_send_does_not_push_every_later_request_late() -> None:
    clock = Clock(0.0)

    def model() -> Model:
        for _ in range(3):
            yield Sleep(5.0)
            yield Call("poll", source_id="s1")

    sched: list[float] = []

    def send(call: Call, t_sched: float) -> Outcome:
        sched.append(t_sched)
        clock.now += 0.1 if len(sched) != 1 else 2.0  # the first one is slow
        return Outcome(200, {}, 0.0)

    drive(model(), send, 0.0, clock=clock, sleep=clock.sleep)
    assert sched == [5.0, 12.0, 17.1]  # each counts from when the previous answer came


def test_a_model_that_only_sleeps_waits_out_each_sleep() -> None:
    # The operator with nothing left to do yields sleeps only: each must really be slept, or a
    # Locust process would spin in one greenlet and starve every agent.
    clock = Clock(0.0)
    woke: list[float] = []

    def model() -> Model:
        for _ in range(3):
            yield Sleep(1.0)
            woke.append(clock.now)

    drive(model(), lambda call, t: Outcome(200, {}, 0.0), 0.0, clock=clock, sleep=clock.sleep)
    assert woke == [1.0, 2.0, 3.0]


def test_request_path_keeps_every_request_on_the_given_host() -> None:
    assert request_path(Call("poll", source_id="abc")) == "/v1/sms/sources/abc/command"
    hostile = request_path(Call("get_source", source_id="@evil.example/../x?y#z"))
    assert hostile == "/v3/sources/%40evil.example%2F..%2Fx%3Fy%23z"
    assert request_path(Call("list_tasks", query={"limit": 200, "offset": 0})) == "/v3/tasks?limit=200&offset=0"


def test_server_timing_header() -> None:
    assert server_ms("app;dur=1.25") == 1.25
    assert server_ms('db;dur=3, app;desc="x";dur="0.5"') == 0.5
    assert server_ms("app;dur=5.5, body;dur=2.25") == 3.25  # the server's own time: less its wait for the body
    assert server_ms("body;dur=1, app;dur=0.5") == 0.0  # never below zero
    assert math.isnan(server_ms(None)) and math.isnan(server_ms("cache;dur=1")) and math.isnan(server_ms("app;dur=x"))


def test_decode_names_transport_failures_and_bad_bodies() -> None:
    assert decode(0, None, 1.0, Timeout()).error == "timeout"
    assert decode(0, None, 1.0, ConnectionRefusedError()).error == "refused"
    assert decode(0, None, 1.0, ConnectionResetError()).error == "connection"
    assert transport_error(TimeoutError()) == "timeout"
    bad = decode(200, b"{not json", 0.1, None)
    assert bad.status == 200 and bad.body is None and bad.error == "invalid_json"
    err = decode(409, b'{"error_code": "SMS.2010", "error_msg": "no"}', 0.1, None)
    assert err.error_code == "SMS.2010" and err.error == "" and not err.retryable


def test_annotations_read_the_poll_answer_and_the_call() -> None:
    poll = Call("poll", source_id="s")
    got = Outcome(200, {"command_name": "START", "command_param": {"task_id": "t1"}})
    assert record_annotations(poll, got) == ("START", "t1")
    assert record_annotations(poll, Outcome(200, {})) == ("", "")
    assert record_annotations(poll, Outcome(200, {"command_name": "UPLOAD_LOG", "command_param": {"bucket": "b"}})) == (
        "UPLOAD_LOG",
        "",
    )
    ack = Call("command_result", source_id="s", command_name="SYNC", task_id="t2")
    assert record_annotations(ack, Outcome(200, {})) == ("SYNC", "t2")


@pytest.mark.parametrize(
    "arrival",
    [{"kind": "all_at_once"}, {"kind": "ramp", "duration_s": 20}, {"kind": "wave", "waves": 3, "interval_s": 10}],
)
def test_the_shape_starts_exactly_the_agents_that_have_arrived(arrival: dict[str, Any]) -> None:
    scenario = load_scenario(QUICKSTART).with_overrides(agents=50, fields={"fleet.arrival": arrival})
    for t in (0.0, 0.3, 5.0, 9.99, 10.0, 15.5, 25.0, 59.0):
        assert agents_due(scenario, t) == sum(arrival_s(scenario, i) <= t for i in range(50)), (arrival, t)
