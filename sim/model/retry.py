"""Retry policies for calls that failed with 5xx, a timeout or a refused connection.

How a fleet comes back after an outage is decided here: without jitter, agents that failed
together retry together and the reconnect storm repeats at every backoff step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class RetryPolicyName(str, Enum):
    NONE = "none"
    FIXED = "fixed"
    EXPONENTIAL = "exponential"
    EXPONENTIAL_FULL_JITTER = "exponential_full_jitter"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`max_attempts` counts every try, the first included; `delay_s(k)` is the wait after failure k (1-based)."""

    policy: RetryPolicyName = RetryPolicyName.EXPONENTIAL_FULL_JITTER
    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 5

    def attempts(self) -> int:
        return 1 if self.policy is RetryPolicyName.NONE else max(1, self.max_attempts)

    def delay_s(self, failures: int, rng: random.Random) -> float:
        if self.policy is RetryPolicyName.FIXED:
            return self.base_s
        ceiling = min(self.cap_s, self.base_s * 2 ** (failures - 1))
        if self.policy is RetryPolicyName.EXPONENTIAL_FULL_JITTER:
            return rng.uniform(0.0, ceiling)
        return ceiling
