"""SLO expressions: what `sim.slo` reads, what it refuses (naming the part), and checks against a summary."""

from __future__ import annotations

import math

import pytest

from sim.scenario import ScenarioError, parse_scenario
from sim.slo import SloError, evaluate, parse_slo

POLL = "GET /v1/sms/sources/{source_id}/command"


@pytest.mark.parametrize(
    ("text", "stat", "endpoint", "op", "limit"),
    [
        ("p99 of poll < 200 ms", "p99", POLL, "<", 200.0),
        (f"p95 of {POLL} <= 0.2 s", "p95", POLL, "<=", 200.0),
        ("p95 of /v1/sms/sources/{source_id}/command < 5ms", "p95", POLL, "<", 5.0),
        ("error rate < 0.1%", "error_rate", None, "<", 0.001),
        ("error rate of register < 1%", "error_rate", "POST /v3/sources", "<", 0.01),
        ("error_rate <= 0.002", "error_rate", None, "<=", 0.002),
        ("p99.9 of get /v3/sources < 1 s", "p99_9", "GET /v3/sources", "<", 1000.0),
        ("  mean   of  poll_v3 > 0.5 ms ", "mean", "GET /v3/sources/{source_id}/command", ">", 0.5),
    ],
)
def test_good_expressions(text: str, stat: str, endpoint: str | None, op: str, limit: float) -> None:
    slo = parse_slo(text)
    assert (slo.stat, slo.endpoint, slo.op) == (stat, endpoint, op)
    assert slo.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("p98 of poll < 2 ms", "unknown metric 'p98'"),
        ("p99 of pol < 2 ms", "unknown endpoint 'pol'"),
        ("p99 of /v3/sources < 2 ms", "several methods"),
        ("p99 of poll < 2", "latency unit"),
        ("p99 of poll < 2 kg", "latency unit"),
        ("p99 of poll < x ms", "number as the limit, got 'x'"),
        ("p99 of poll == 2 ms", "operator"),
        ("error rate < 200%", "at most 100%"),
        ("error rate < 1 ms", "percentage"),
        ("p99 of poll < -1 ms", "non-negative"),
        ("poll is fast", "METRIC [of ENDPOINT] < LIMIT"),
        ("", "empty"),
    ],
)
def test_bad_expressions_name_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(SloError, match=None) as info:
        parse_slo(text)
    assert names in str(info.value)
    assert "\n" not in str(info.value)


def test_evaluate_against_a_summary() -> None:
    summary = {
        "requests": {"count": 1000, "error_rate": 0.002, "latency_ms": {"p99": 30.0}},
        "endpoints": {POLL: {"count": 900, "error_rate": 0.0, "latency_ms": {"p99": 12.5, "p50": 1.0, "mean": 2.0}}},
    }
    assert evaluate("p99 of poll < 20 ms", summary) == (12.5, True)
    assert evaluate("p99 of poll < 0.01 s", summary) == (12.5, False)
    assert evaluate("p99 < 20 ms", summary) == (30.0, False)  # all requests
    assert evaluate("error rate < 0.1%", summary) == (0.002, False)
    assert evaluate("error rate of poll < 0.1%", summary) == (0.0, True)
    value, passed = evaluate("p99 of register < 20 ms", summary)  # no registrations: nothing shows it is met
    assert math.isnan(value) and not passed
    slo = parse_slo("p99 of poll < 20 ms")
    assert slo.ratio(10.0) == 0.5 and slo.ratio(40.0) == 2.0
    assert parse_slo("mean of poll > 4 ms").ratio(2.0) == 2.0  # a lower limit: below it fails


def test_scenario_slo_field_is_checked_with_its_path() -> None:
    base = "name: s\nduration_s: 10\nfleet: {agents: 10}\n"
    ok = parse_scenario(base + "slo: ['p99 of poll < 200 ms', 'error rate < 0.1%']\n")
    assert ok.slo == ("p99 of poll < 200 ms", "error rate < 0.1%")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(base + "slo: ['p99 of poll < 200 ms', 'p99 of nothing < 1 ms']\n")
    [(path, message)] = info.value.problems
    assert path == "slo.1" and "unknown endpoint 'nothing'" in message


def test_the_capacity_baseline_has_its_slo() -> None:
    from sim.scenarios import find_scenario

    assert find_scenario("capacity-baseline").slo == ("p99 of poll < 200 ms", "error rate < 0.1%")


def test_dispatch_latency_and_stuck_tasks() -> None:
    summary = {
        "tasks": {"stuck": 2},
        "dispatch": {"enqueue_to_deliver_ms": {"p95": 4500.0, "p99": 9000.0}},
    }
    slo = parse_slo("p95 dispatch latency < 60 s")
    assert (slo.stat, slo.dispatch, slo.limit, slo.is_latency) == ("p95", True, 60_000.0, False)
    assert evaluate(slo, summary) == (4500.0, True)
    assert evaluate("p99 dispatch latency < 5 s", summary) == (9000.0, False)
    assert evaluate("stuck tasks == 0", summary) == (2.0, False)
    assert evaluate("stuck tasks <= 2", summary) == (2.0, True)
    assert math.isnan(evaluate("stuck tasks == 0", {})[0])  # no task table: not measured, fails
    for text, names in [
        ("stuck tasks == 0.5", "whole number"),
        ("stuck tasks == 0 ms", "no unit"),
        ("stuck tasks of poll == 0", "not an endpoint"),
        ("p95 dispatch latency of poll < 1 s", "not an endpoint"),
        ("p95 dispatch latency < 1", "latency unit"),
    ]:
        with pytest.raises(SloError) as info:
            parse_slo(text)
        assert names in str(info.value)
