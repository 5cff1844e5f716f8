"""The one retry loop (`sim.model.retry.retried`) stepped by hand, for every policy: no engine, no clock."""

from __future__ import annotations

import random
from collections.abc import Generator

import pytest

from sim.model.intents import Call, Outcome, Sleep
from sim.model.retry import RetryPolicy, RetryPolicyName, retried

CALL = Call("get_task", task_id="t1")
DOWN = Outcome(503, {"error_code": "SMS.9999"}, latency_s=0.25)
TIMEOUT = Outcome(0, latency_s=10.0, error="timeout")
OK = Outcome(200, {"id": "t1"}, latency_s=0.5)
REFUSED = Outcome(409, {"error_code": "SMS.2009"}, latency_s=0.125)
POLICIES = {
    RetryPolicyName.NONE: RetryPolicy(RetryPolicyName.NONE),
    RetryPolicyName.FIXED: RetryPolicy(RetryPolicyName.FIXED, base_s=1.5, cap_s=4.0, max_attempts=4),
    RetryPolicyName.EXPONENTIAL: RetryPolicy(RetryPolicyName.EXPONENTIAL, base_s=1.0, cap_s=3.0, max_attempts=4),
    RetryPolicyName.EXPONENTIAL_FULL_JITTER: RetryPolicy(
        RetryPolicyName.EXPONENTIAL_FULL_JITTER, base_s=1.0, cap_s=3.0, max_attempts=4
    ),
    RetryPolicyName.DECORRELATED_JITTER: RetryPolicy(
        RetryPolicyName.DECORRELATED_JITTER, base_s=1.0, cap_s=5.0, max_attempts=4
    ),
}
JITTERED = (RetryPolicyName.EXPONENTIAL_FULL_JITTER, RetryPolicyName.DECORRELATED_JITTER)
_Loop = Generator[Call | Sleep, Outcome | None, tuple[Outcome, float]]


def _step(loop: _Loop, answers: list[Outcome]) -> tuple[list[Call | Sleep], Outcome, float]:
    """Answer each Call with the next of `answers` and each Sleep with None; what it yielded and returned."""
    intents: list[Call | Sleep] = []
    answer: Outcome | None = None
    try:
        while True:
            intent = loop.send(answer)
            intents.append(intent)
            answer = answers.pop(0) if isinstance(intent, Call) else None
    except StopIteration as stop:
        outcome, t = stop.value
    assert not answers, "the loop stopped before every answer was asked for"
    return intents, outcome, t


def _expected_delays(policy: RetryPolicy, failures: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    delays = [0.0]
    for k in range(1, failures + 1):
        delays.append(policy.delay_s(k, rng, delays[-1]))
    return delays[1:]


@pytest.mark.parametrize("name", list(RetryPolicyName))
def test_a_call_that_keeps_failing_is_tried_max_attempts_times(name: RetryPolicyName) -> None:
    policy = POLICIES[name]
    tries = policy.attempts()
    intents, outcome, t = _step(retried(CALL, DOWN, policy, random.Random(3), 100.0), [DOWN] * (tries - 1))
    delays = _expected_delays(policy, tries - 1, 3)
    # Sleep, Call, Sleep, Call...: the first try was the caller's, so tries - 1 more.
    assert intents == [x for d in delays for x in (Sleep(d), CALL)]
    assert outcome is DOWN
    expected_t = 100.0
    for d in delays:
        expected_t += d
        expected_t += DOWN.latency_s
    assert t == expected_t  # the same additions, in the same order, as the models made before
    if name is RetryPolicyName.NONE:
        assert intents == [] and t == 100.0


@pytest.mark.parametrize("name", [n for n in RetryPolicyName if n is not RetryPolicyName.NONE])
@pytest.mark.parametrize("last", [OK, REFUSED], ids=["success", "refused"])
def test_the_first_answer_that_is_not_retryable_ends_the_loop(name: RetryPolicyName, last: Outcome) -> None:
    policy = POLICIES[name]
    intents, outcome, t = _step(retried(CALL, TIMEOUT, policy, random.Random(5), 0.0), [DOWN, last])
    delays = _expected_delays(policy, 2, 5)
    assert intents == [Sleep(delays[0]), CALL, Sleep(delays[1]), CALL]
    assert outcome is last
    assert t == pytest.approx(delays[0] + DOWN.latency_s + delays[1] + last.latency_s)


def test_delays_follow_the_policy() -> None:
    fixed = _step(retried(CALL, DOWN, POLICIES[RetryPolicyName.FIXED], random.Random(1), 0.0), [DOWN] * 3)[0]
    assert [i.seconds for i in fixed if isinstance(i, Sleep)] == [1.5, 1.5, 1.5]
    exp = _step(retried(CALL, DOWN, POLICIES[RetryPolicyName.EXPONENTIAL], random.Random(1), 0.0), [DOWN] * 3)[0]
    assert [i.seconds for i in exp if isinstance(i, Sleep)] == [1.0, 2.0, 3.0]  # doubling, capped at 3
    policy = POLICIES[RetryPolicyName.EXPONENTIAL_FULL_JITTER]
    jitter = [
        i.seconds
        for seed in range(200)
        for i in _step(retried(CALL, DOWN, policy, random.Random(seed), 0.0), [DOWN] * 3)[0]
        if isinstance(i, Sleep)
    ]
    ceilings = [1.0, 2.0, 3.0] * 200
    assert all(0.0 <= d <= c for d, c in zip(jitter, ceilings))
    assert len(set(jitter)) == len(jitter)  # drawn, not fixed


def test_only_jittered_backoff_draws_from_the_rng() -> None:
    """The models share one generator: a policy that draws nothing must leave its stream untouched."""
    for name, policy in POLICIES.items():
        rng = random.Random(9)
        _step(retried(CALL, DOWN, policy, rng, 0.0), [DOWN] * (policy.attempts() - 1))
        untouched = rng.random() == random.Random(9).random()
        assert untouched is (name not in JITTERED)


def test_decorrelated_jitter_grows_from_the_last_wait_up_to_its_cap() -> None:
    """Each wait is drawn from U(base, 3 x the last wait) and capped: AWS's decorrelated jitter."""
    policy = RetryPolicy(RetryPolicyName.DECORRELATED_JITTER, base_s=1.0, cap_s=20.0, max_attempts=8)
    for seed in range(200):
        waits = [
            i.seconds
            for i in _step(retried(CALL, DOWN, policy, random.Random(seed), 0.0), [DOWN] * 7)[0]
            if isinstance(i, Sleep)
        ]
        previous = 1.0
        for wait in waits:
            assert 1.0 <= wait <= min(20.0, 3.0 * previous)
            previous = wait
    capped = RetryPolicy(RetryPolicyName.DECORRELATED_JITTER, base_s=1.0, cap_s=2.0, max_attempts=30)
    long = [
        i.seconds
        for i in _step(retried(CALL, DOWN, capped, random.Random(1), 0.0), [DOWN] * 29)[0]
        if isinstance(i, Sleep)
    ]
    assert max(long) <= 2.0 and long.count(2.0) > 5  # the cap binds once the draws pass it
