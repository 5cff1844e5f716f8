"""The lines `smsload demo` ends with: the poll endpoint predicted vs measured, and the large fleet.

Two views of each run: the whole run, as the report pages show it, and its steady state,
after the fleet has registered. The quickstart's agents all arrive at once, so every run
starts with a registration storm, and the real server and the calibrated simulation get
through it at different speeds (the real server interleaves registrations on one event
loop); the steady state is where the polling plane is compared, and where capacity is read.
"""

from __future__ import annotations

import math

from sim.report.analysis import RunAnalysis
from sim.report.capacity import POLL, steady_state
from sim.report.trust import trust_lines

REGISTER = "/v3/sources"
_METRICS = (("throughput_per_s", "polls/s", 1), ("p50", "p50 ms", 2), ("p95", "p95 ms", 2))


def settled_s(analysis: RunAnalysis) -> float:
    """When the last registration came back, plus one poll interval: the start of the steady state."""
    req = analysis.run.requests
    register = req[req["endpoint"] == REGISTER]
    done = float((register["t_start_s"] + register["latency_ms"] / 1000.0).max()) if len(register) else 0.0
    return done + float(analysis.run.manifest["scenario"]["agent"]["poll_interval_s"])


def _whole(analysis: RunAnalysis) -> dict[str, float]:
    e = analysis.endpoints
    return {k: float(e.loc[POLL, k]) if POLL in e.index else math.nan for k, *_ in _METRICS + (("p99",),)}


def _window(analysis: RunAnalysis, start_s: float, end_s: float) -> dict[str, float]:
    row = steady_state(analysis.run, start_s, POLL, end_s=end_s, n_boot=100)
    return {k: float(row[k]) for k, *_ in _METRICS + (("p99",),)}


def _rel(simulated: float, measured: float) -> str:
    return f"{simulated / measured - 1:+.1%}" if measured and math.isfinite(simulated / measured) else "-"


def _rows(title: str, measured: dict[str, float], simulated: dict[str, float]) -> list[str]:
    lines = []
    for i, (key, label, digits) in enumerate(_METRICS):
        lines.append(
            f"  {title if i == 0 else '':<20}{label:<9}{measured[key]:>12.{digits}f}"
            f"{simulated[key]:>12.{digits}f}{_rel(simulated[key], measured[key]):>18}"
        )
    return lines


def _prediction(values: dict[str, float]) -> str:
    return (
        f"{values['throughput_per_s']:,.1f} polls/s, p50 {values['p50']:.2f} ms, p95 {values['p95']:.2f} ms, "
        f"p99 {values['p99']:.2f} ms"
    )


def summary_lines(load: RunAnalysis, sim: RunAnalysis, big: RunAnalysis, scale: int) -> list[str]:
    """Predicted vs measured for the poll endpoint (whole run, steady state), then the `scale`x fleet."""
    agents = int(sim.run.manifest["scenario"]["fleet"]["agents"])
    end = float(sim.run.manifest["scenario"]["duration_s"])
    lines = [
        f"poll endpoint {POLL}, {agents:,} agents:",
        f"  {'':<29}{'measured':>12}{'simulated':>12}{'sim vs measured':>18}",
    ]
    lines += _rows("whole run", _whole(load), _whole(sim))
    start = max(settled_s(load), settled_s(sim))
    if start < end - 1.0:
        lines += _rows(f"from {start:.0f} s to {end:.0f} s", _window(load, start, end), _window(sim, start, end))
    big_agents = int(big.run.manifest["scenario"]["fleet"]["agents"])
    lines.append(f"predicted for {big_agents:,} agents ({scale}x), whole run: {_prediction(_whole(big))}")
    big_start, big_end = settled_s(big), float(big.run.manifest["scenario"]["duration_s"])
    if big_start < big_end - 1.0:
        lines.append(
            f"  after the registration storm (from {big_start:.0f} s): {_prediction(_window(big, big_start, big_end))}"
        )
    else:
        lines.append(f"  the fleet was still registering at the end of the run ({big_end:g} s)")
    for name, a in (("simulation", sim), (f"{scale}x simulation", big)):
        notes, warnings = trust_lines(a.run.requests, a.run.manifest, a.duration_s)
        lines += [f"trust ({name}): {n}" for n in notes] + [f"warning ({name}): {w}" for w in warnings]
    for name, a in (("load test", load), ("simulation", sim), (f"{scale}x simulation", big)):
        lines += [f"warning ({name}): {w}" for w in a.warnings]
    return lines
