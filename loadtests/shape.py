"""The load shape: Locust's user count follows the scenario's fleet arrival, for its duration.

Users are started a little ahead of their agents' arrival (`LEAD_S`, one shape tick) and each
agent waits for its own arrival time, so a ramp or a wave arrives on time to the second
instead of in one-second steps. The operator is one more user.

`use_common_options`: Locust's -u/-r (and the web UI's users and ramp-up fields) are not
ignored but mapped onto the fleet (`loadtests.common_options`); -t shortens the run. A test
started again from the web UI starts the shape afresh (`reset_time`).
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtests.hooks import LoadTest
from loadtests.timeline import agents_due

LEAD_S = 1.0  # Locust asks the shape once a second
SPAWN_WITHIN_S = 0.25  # start each tick's new users within this time


class FleetShape(LoadTestShape):
    """All at once, a ramp or waves, from `fleet.arrival`; stops at the end of the duration."""

    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._last: tuple[int, float] | None = None
        self._begun = False

    def reset_time(self) -> None:
        """A new test (Locust calls this on every start): its first tick comes before its `test_start`."""
        super().reset_time()
        self._last, self._begun = None, False

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        test = LoadTest.of(self.runner.environment)
        assert test.scenario is not None
        # The first tick starts the test, whose `test_start` then fixes t0: until then the
        # clock still reads the previous test's.
        elapsed, self._begun = (test.elapsed() if self._begun else 0.0), True
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
