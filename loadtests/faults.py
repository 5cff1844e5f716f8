"""`FaultDriver`: the scenario's fault timeline, played on the run's clock against the server's admin endpoint.

The simulation applies `sim.model.faults` inside its simulated server; a load test has a real
server, so a thread of `smsload load` sets the server's fault state (`sim.server.admin`) at
each change of the timeline, counted from the run's `t0` (the moment Locust's test started,
which the run's manifest holds, the same zero as the records' `t_*_s`). Each change is sent
when due; how late it landed is said and kept (`applied`), since a fault that lands late
moves the window the load test measures. A fault from 0 s is set before Locust starts
(`prime`). When the run ends the server is set back to no fault.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.model.faults import NO_FAULT, FaultTimeline
from sim.server.admin import AdminError, set_faults

_T0_WAIT_S = 120.0  # Locust's start, workers included


def describe(state: dict[str, Any]) -> str:
    """A fault state in a few words."""
    if state.get("outage"):
        return f"outage ({state['outage']})"
    if state.get("latency_ms"):
        return f"added latency {state['latency_ms']} ms"
    if state.get("error_rate"):
        return f"error rate {state['error_rate']:g} ({state.get('error_status', 503)})"
    if state.get("slow_store"):
        slow = state["slow_store"]
        return f"slow store {slow['added_ms']} ms per {'write' if slow.get('writes_only', True) else 'transaction'}"
    return "no fault"


class FaultDriver(threading.Thread):
    """Plays `timeline` against `base_url` once the run directory `out` names its t0; `stop()` ends it."""

    def __init__(
        self, timeline: FaultTimeline, base_url: str, admin_token: str, out: Path, say: Callable[[str], None]
    ) -> None:
        super().__init__(name="smsload-faults", daemon=True)
        self.changes = timeline.changes()
        self.base_url, self._token, self.out, self.say = base_url, admin_token, out, say
        self._stop_event = threading.Event()
        self.applied: list[dict[str, Any]] = []  # {"t_s": planned, "late_s": ..., "state": ...}
        self.error: str | None = None

    def stop(self) -> None:
        self._stop_event.set()

    def prime(self) -> None:
        """Set the state due at 0 s now, before the run starts: a fleet that comes up during an
        outage must find the server down from its first request, not some milliseconds later."""
        while self.changes and self.changes[0][0] <= 0:
            t_s, state = self.changes.pop(0)
            set_faults(self.base_url, self._token, state)
            self.applied.append({"t_s": t_s, "late_s": 0.0, "state": state})
            self.say(f"smsload load: at {t_s:g} s: {describe(state)} (set before the start)")

    def _t0(self) -> float | None:
        deadline = time.monotonic() + _T0_WAIT_S
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            try:
                t0 = json.loads((self.out / "manifest.json").read_text()).get("t0_epoch")
            except (OSError, ValueError):
                t0 = None
            if t0 is not None:
                return float(t0)
            self._stop_event.wait(0.05)
        return None

    def run(self) -> None:
        try:
            t0 = self._t0()
            if t0 is None:
                return
            for t_s, state in self.changes:
                if self._stop_event.wait(max(0.0, t0 + t_s - time.time())):
                    return
                set_faults(self.base_url, self._token, state)
                late = max(0.0, time.time() - t0 - t_s)
                self.applied.append({"t_s": t_s, "late_s": round(late, 4), "state": state})
                self.say(f"smsload load: at {t_s:g} s: {describe(state)} (set {late * 1000:.0f} ms late)")
        except AdminError as exc:
            self.error = str(exc)
            self.say(f"smsload load: error: faults: {exc}")
        finally:
            if self.applied and self.applied[-1]["state"] != NO_FAULT:
                try:
                    set_faults(self.base_url, self._token, dict(NO_FAULT))
                except AdminError:
                    pass  # the server is gone already: nothing left to restore
