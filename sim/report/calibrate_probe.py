"""The capacity probe: the server's saturated throughput and its number of concurrent servers.

A low-load run tells the service time of one request but not how many requests the server
serves at once (its workers, or a database pool): that only shows when the server is busy.
A probe is a short run whose offered load steps or ramps past the server's capacity (e.g.
`fleet.arrival: {kind: ramp}` with more agents than the server can serve). Where it is
saturated, completions per second stay at the capacity X; by the utilisation law, a server
with c concurrent servers each busy for a mean service time S completes X = c / S, so
c = X * S (rounded; the fraction left over says how well the low-load service time holds
at saturation, e.g. not well under a CPU quota, which slows a busy server).

The saturated bins are the plateau: 1 s bins of completions at least `PLATEAU` of the
busiest bins (their p90), after the probe's first `after_s`. `offered_over_capacity`: the
probe's peak offered load (its scenario's request rate) over X; below ~1.1 the probe may
not have saturated the server and c is unreliable (said in the notes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.records import quantiles

PLATEAU = 0.9  # a saturated bin completes at least this fraction of the busiest bins' rate
MISFIT = 0.2  # c * (1 +- MISFIT) around X * S: beyond, the low-load service time does not hold at saturation


@dataclass(frozen=True)
class Capacity:
    """What a probe found: saturated throughput (requests/s), mean service (ms) there, servers c."""

    throughput_per_s: float
    mean_service_ms: float
    servers_raw: float  # X * S, before rounding
    servers: int
    bins: int  # saturated 1 s bins the figures come from
    notes: tuple[str, ...] = ()


def fit_capacity(
    t_end_s: np.ndarray, service_ms: np.ndarray, *, bin_s: float = 1.0, offered_per_s: float | None = None
) -> Capacity:
    """Capacity from a probe's completions: `t_end_s` when each successful request was answered,
    `service_ms` its (fitted mean) service time. Needs at least 3 bins."""
    if len(t_end_s) == 0:
        raise ValueError("the probe has no successful requests")
    cells = np.floor((t_end_s - t_end_s.min()) / bin_s).astype(np.int64)
    counts = np.bincount(cells)[:-1]  # the last bin is cut short by the end of the run
    if len(counts) < 3:
        raise ValueError(f"the probe lasts {len(counts) + 1} bins of {bin_s:g} s; it needs at least 3")
    top = float(quantiles(counts.astype(float), [0.9])[0])
    plateau = np.flatnonzero(counts >= PLATEAU * top)
    throughput = float(counts[plateau].mean()) / bin_s
    in_plateau = np.isin(cells, plateau)
    mean_service = float(service_ms[in_plateau].mean())
    raw = throughput * mean_service / 1000.0
    servers = max(1, round(raw))
    notes = []
    if abs(raw / servers - 1) > MISFIT:
        notes.append(
            f"probe: X * S = {raw:.2f} servers is far from {servers}: the low-load service time does not "
            "hold at saturation (a CPU quota or contention slows a busy server); the capacity is the measured X"
        )
    if offered_per_s is not None and offered_per_s < 1.1 * throughput:
        notes.append(
            f"probe: its peak offered load ({offered_per_s:.0f}/s) is not clearly above the throughput "
            f"({throughput:.0f}/s): it may not have saturated the server"
        )
    return Capacity(throughput, mean_service, raw, servers, len(plateau), tuple(notes))
