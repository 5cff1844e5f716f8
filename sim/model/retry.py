"""Retry policies for calls that failed with 5xx, a timeout or a refused connection.

How a fleet comes back after an outage is decided here: without jitter, agents that failed
together retry together and the reconnect storm repeats at every backoff step. `retried` is
the one retry loop the agent and the operator share: a sub-generator that is entered only
once a call has failed, so an agent waiting for its next poll holds no frame of it.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass
from enum import Enum

from sim.model.intents import Call, Outcome, Sleep


class RetryPolicyName(str, Enum):
    NONE = "none"
    FIXED = "fixed"
    EXPONENTIAL = "exponential"
    EXPONENTIAL_FULL_JITTER = "exponential_full_jitter"
    DECORRELATED_JITTER = "decorrelated_jitter"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every try, the first included; `delay_s(k)` is the wait after failure k (1-based).

    Decorrelated jitter (AWS's "Exponential Backoff And Jitter") draws each wait from
    U(base, 3 x the previous wait), capped: it needs the previous wait (`previous_s`, the
    first time `base_s`) rather than the failure count.
    """

    policy: RetryPolicyName = RetryPolicyName.EXPONENTIAL_FULL_JITTER
    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 5

    def attempts(self) -> int:
        return 1 if self.policy is RetryPolicyName.NONE else max(1, self.max_attempts)

    def delay_s(self, failures: int, rng: random.Random, previous_s: float = 0.0) -> float:
        if self.policy is RetryPolicyName.FIXED:
            return self.base_s
        if self.policy is RetryPolicyName.DECORRELATED_JITTER:
            return min(self.cap_s, rng.uniform(self.base_s, 3.0 * max(previous_s, self.base_s)))
        ceiling = min(self.cap_s, self.base_s * 2 ** (failures - 1))
        if self.policy is RetryPolicyName.EXPONENTIAL_FULL_JITTER:
            return rng.uniform(0.0, ceiling)
        return ceiling


def retried(
    call: Call, outcome: Outcome, policy: RetryPolicy, rng: random.Random, t: float
) -> Generator[Call | Sleep, Outcome | None, tuple[Outcome, float]]:
    """Retry `call`, whose first try gave the retryable `outcome`, as `policy` says.

    Yields a `Sleep` before each new try and the `Call` itself; returns the last outcome (the
    first that is not retryable, or the last retryable one when the tries run out) and the
    model time `t` advanced by every wait and every latency. The clock goes in and comes out,
    rather than the time the retries took: adding each wait and latency to it in turn, as
    the models did before they shared this loop, keeps every later time bit for bit.
    """
    failures, delay = 0, 0.0
    while True:
        failures += 1
        if failures >= policy.attempts():
            return outcome, t
        delay = policy.delay_s(failures, rng, delay)
        yield Sleep(delay)
        t += delay
        answer = yield call
        assert answer is not None, "executors answer every Call with an Outcome"
        outcome = answer
        t += outcome.latency_s
        if not outcome.retryable:
            return outcome, t
