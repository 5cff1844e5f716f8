"""The load shape: Locust's user count follows the scenario's fleet arrival, for its duration.

Users are started a little ahead of their agents' arrival (`LEAD_S`, one shape tick) and each
agent waits for its own arrival time, so a ramp or a wave arrives on time to the second
instead of in one-second steps. The operator is one more user.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtests.hooks import LoadTest
from loadtests.timeline import agents_due

LEAD_S = 1.0  # Locust asks the shape once a second
SPAWN_WITHIN_S = 0.25  # start each tick's new users within this time


class FleetShape(LoadTestShape):
    """All at once, a ramp or waves, from `fleet.arrival`; stops at the end of the duration."""

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[int, float] | None = None

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        test = LoadTest.of(self.runner.environment)
        assert test.scenario is not None
        elapsed = test.elapsed()
        if elapsed >= test.duration_s:
            test.reached_end = True
            self._last = None
            return None
        users = agents_due(test.scenario, elapsed + LEAD_S) + 1  # + the operator (fixed_count = 1)
        if self._last is not None and self._last[0] == users:
            return self._last  # unchanged: Locust does nothing
        new = users - (self._last[0] if self._last else 0)
        self._last = (users, max(1.0, new / SPAWN_WITHIN_S))
        return self._last
