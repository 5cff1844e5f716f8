"""Calibration: fit the simulated server (`server:` of a scenario) to a measured run.

`calibrate_run(run, base)` returns `base` (by default the run's own scenario, from its
manifest) with its `server:` section replaced by a fit to the run; `calibrate` returns the
same with the details of every fit (`Calibration`), which `smsload calibrate` writes as
comments. The simulated server (`sim/des/engine.py`) is `workers` FIFO servers, a service
time per endpoint, an optional write lock and a round trip split in two halves that occupy
no server; the fit fills exactly those:

- **service_ms** per endpoint (names of `sim.model.intents.ENDPOINTS`; endpoints with fewer
  than `min_samples` usable rows in the window, after `after_s`, are fitted from the whole
  run's, and those with fewer there too share `default`, fitted from their own rows when there
  are 10: the operator's task wave comes with the fleet's arrival, before the window, and on
  the knee rig its requests cost two to three store transactions against a poll's one): from
  `server_ms` (the `Server-Timing` handler time of a load test, the service time of a
  simulation) plus `overhead_ms`, the
  server's time per request OUTSIDE the handler (HTTP parsing, ASGI glue, writing the
  response), which occupies the one worker as much as the handler does. In a load test only
  requests sent while no other was in flight count (`first_in`): a handler that awaits lets
  the event loop run others, whose time would land in its Server-Timing (a registration burst
  showed 7 ms medians for a 1 ms write; the reference server subtracts its wait for the body,
  `body;dur`, but another server may await more). Not the requests that no other overlapped
  at all: that choice depends on the request's own duration and favours the quick ones (on the
  knee rig their mean poll came out 7% under all polls', and the probe's c / X made up the
  difference on every endpoint). Without
  `server_ms` (a server without the header, or `from_latency=True`): latency at low load
  minus the round trip.
- **overhead_ms**: the option when given (the fidelity benchmark measures it: server CPU
  per request minus the mean handler time); 0 for a simulation (its service time is the
  whole occupancy); else `DEFAULT_OVERHEAD_MS`, granian's own CPU per request for a plain
  ASGI app measured by `benchmarks/server` (about 50 µs of the ~100 µs a poll costs). It is
  not estimated from the run: that needs the server saturated, and a Locust run on the
  server's machine saturates the generator first.
- **outside the handler, per endpoint** (load tests): for `first_in` requests, latency -
  Server-Timing is the round trip (the same for every endpoint) plus the server's time outside
  the handler, so the difference of two endpoints' medians is the difference of their outside
  times; each endpoint's excess over the quickest is added to `overhead_ms` (the level: the
  default, the option, or the probe's c / X; where the low run's handlers took more than c / X,
  the difference is `idle_start_ms` instead, below). It is charged as service time: granian's glue
  before and after the app runs on the worker's one event loop. The body's arrival is not: its
  awaits hand the loop to others, which `requeue_bodies` (BODY_PASSES) models as queueing,
  behind the share `requeue_at` (REQUEUE_AT) of the requests waiting.
- **poll_write**: the polls that recorded their agent's visit, replayed from the scenario's
  `liveness` (coalesced: the first poll `coalesce_s` after registration or the last recorded
  visit), get a service time of their own (on the knee rig about twice a poll's: two store
  transactions). From all of them, not only `first_in` ones: a fleet that arrived together
  records its visits in waves, and the poll answers without awaiting anything, so its
  Server-Timing is its own even under load.
- **rtt_ms**: `latency - server_ms - overhead - queue wait (simulation only)`, for a load test
  of its `first_in` requests (nothing queued ahead of them), so it holds the network and
  everything the client spends on a request (Locust's own send and receive, gevent
  scheduling, the kernel) and no queueing, which the simulation adds itself. (Requests in
  0.1 s bins where the server was at most half busy, `idle_busy`, as before and still for a
  simulation or too few `first_in` requests, may have queued behind one request: on the knee
  rig, where a service takes ~5 ms, that put a queue's tail into the round trip and the
  simulated poll p50 came out 10 to 20% high at 50 to 90% of capacity.) The selection does
  not depend on the request's own round trip.
  The engine draws the round trip once per request and splits it in two halves, so the
  fitted distribution is the measured one (no deconvolution; the p99 comes out as measured).
- **workers**: 1 for a load test (`smsload serve` runs one granian worker whose handlers run
  one at a time on one event loop), or `server_workers` from the manifest, or the option;
  a simulation keeps its own. `write_lock` is kept from the base scenario.

Measured quantiles are order statistics (`sim.records.quantiles`), as in summary.json and the
report. Family: a lognormal (median, sigma: least squares on log quantiles) when its quantiles at
`CHECK_P` and its mean are all within `tolerance` of the data, else `empirical` values at
`GRID` evenly spaced quantiles (the shape as measured, the extreme tail beyond ~p99.9 cut).

Limits (README "Calibration", benchmarks/RESULTS.md "Fidelity"): the simulation reproduces
throughput (set by the agents' pacing) and latency at loads like the calibration run's. Not
what the model leaves out: the client as a bottleneck (Locust's lag and event-loop delay
grow with load), CPU contention with the generator and other users of the machine, time
correlation (a GC pause or a neighbour's burst slows a whole second; the simulation draws
each request independently), granian's I/O threads overlapping the Python worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from sim.model.distributions import Constant, Distribution, Empirical, LogNormal
from sim.model.liveness import Liveness
from sim.records import Run, load_run, quantiles
from sim.report import calibrate_requests as which
from sim.report.calibrate_probe import Capacity, fit_capacity
from sim.scenario import Scenario, validate_scenario
from sim.scenario_server import POLL_WRITE

__all__ = ["Calibration", "CalibrationError", "Fit", "calibrate", "calibrate_run", "DEFAULT_OVERHEAD_MS"]

DEFAULT_OVERHEAD_MS = 0.05  # benchmarks/RESULTS.md "Server": hello-app CPU per request on granian, 49.9 µs
# How many times a request with a body queues again for the event loop of a load test's server.
# granian hands a body to the app in two ASGI messages (the bytes with more_body, then an empty
# last one): two awaits. On the knee rig (SQLite, 23:00 UTC 2026-11-29) the progress write
# waited beyond a poll's wait (latency - own time) 2.0 to 2.4 poll queue waits more from 50 to
# 90% of capacity and 1.3 at 120%; with 2 passes the simulated progress p50 at 50/80/90% came out
# -5/-12/-17%, with 1 -7/-14/-26% (at 120%: +29% and -8%). Neither holds at every load: a
# pass here waits for what queued behind the request, a fraction of a fresh arrival's wait at
# half load (benchmarks/RESULTS.md "Fidelity at the knee").
BODY_PASSES = 2
# Where such a request queues again: behind this share of those waiting. Fresh requests reach the
# worker's event loop through granian's hand-over, a body's `receive()` resumes on the loop
# itself, so it goes ahead of the requests still in that hand-over. With one granian worker
# blocked 4 ms per request and 290 clients polling every second (120%, benchmarks/knee/
# body_wait.py), a PUT's two `receive()` awaits resumed after 134 and 252 fresh requests, where a
# GET had waited for 246; on the knee rig (SQLite, 120%) the measured progress write waited 1.3
# poll queue waits beyond a poll's, where two passes behind everyone wait 2 (benchmarks/
# RESULTS.md "Where the progress write's body waits"): 0.6 is the knee rig's.
REQUEUE_AT = 0.6
CHECK_P = (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)  # where a service-time fit must match the data
RTT_P = (0.5, 0.75, 0.9, 0.95, 0.99)  # where the round trip must (see fit_rtt)
GRID = 400  # quantiles kept by an empirical fit: its tail ends near p99.9


class CalibrationError(ValueError):
    """The run cannot be calibrated from (no successful requests, ...); the message says why."""


@dataclass(frozen=True)
class Fit:
    """One fitted distribution (ms): from what, how many values, and its worst relative misfit."""

    dist: Distribution
    n: int
    source: str
    error: float  # max relative error of its quantiles at CHECK_P and its mean (service), at RTT_P (rtt)


@dataclass(frozen=True)
class Calibration:
    """The calibrated scenario and how each part of its `server:` section was found."""

    scenario: Scenario
    run_path: Path
    run_id: str
    executor: str
    service: dict[str, Fit]  # "default" and the endpoints with enough rows
    rtt: Fit
    overhead_ms: float
    overhead_source: str
    workers: int
    workers_source: str
    idle_rows: int  # requests sent while the server was nearly idle (the round trip's sample)
    notes: list[str] = field(default_factory=list)
    utilisation: float = 0.0  # the busy fraction of the workers in the calibration run
    capacity: Capacity | None = None  # what the probe found, when there was one
    # Endpoint -> its own time outside the handler (ms): `overhead_ms` + its offset (see outside_offsets)
    outside_ms: dict[str, float] = field(default_factory=dict)


def _lognormal(values: np.ndarray) -> LogNormal:
    """Median from the data, sigma by least squares of log quantiles against normal scores."""
    median = float(quantiles(values, [0.5])[0])
    z = norm.ppf(CHECK_P)
    logs = np.log(quantiles(values, CHECK_P)) - np.log(median)
    return LogNormal(median, max(float(np.dot(z, logs) / np.dot(z, z)), 0.0))


def _misfit(dist: Distribution, values: np.ndarray, with_mean: bool) -> float:
    want = quantiles(values, CHECK_P)
    got = np.array([dist.quantile(p) for p in CHECK_P])
    errors = list(np.abs(got / want - 1))
    if with_mean:
        errors.append(abs(dist.mean / float(values.mean()) - 1))
    return float(max(errors))


def _grid(values: np.ndarray) -> np.ndarray:
    """Evenly spaced quantiles: GRID of them, or one per value when there are fewer."""
    k = min(GRID, len(values))
    return quantiles(values, (np.arange(k) + 0.5) / k)


def fit_service(values: np.ndarray, source: str, tolerance: float) -> Fit:
    """A lognormal if it fits within `tolerance` (quantiles and mean), else the empirical quantiles."""
    values = np.maximum(values, 1e-4)  # lognormal needs > 0; 0.1 µs is below any handler's time
    if np.ptp(values) < 1e-6:
        return Fit(Constant(round(float(values[0]), 6)), len(values), source, 0.0)
    ln = _lognormal(values)
    ln_error = _misfit(ln, values, with_mean=True)
    if ln_error <= tolerance:
        return Fit(LogNormal(round(ln.median, 6), round(ln.sigma, 4)), len(values), source, ln_error)
    emp = Empirical(tuple(np.round(_grid(values), 4)))
    return Fit(emp, len(values), source, _misfit(emp, values, with_mean=True))


def fit_rtt(values: np.ndarray, source: str, tolerance: float) -> Fit:
    """The round trip as measured: the engine draws it once per request and splits it in two
    halves, so the simulated round trip has exactly this distribution. A lognormal (median,
    sigma by least squares of log quantiles at `RTT_P`) when it fits within `tolerance` there,
    else the measured quantiles on a grid (the shape as measured, the extreme tail cut)."""
    values = np.maximum(values, 0.0)
    want = quantiles(values, RTT_P)
    if np.ptp(values) < 1e-6 or want[0] <= 0:
        return Fit(Constant(round(float(want[0]), 4)), len(values), source, 0.0)
    z = norm.ppf(RTT_P)
    logs = np.log(np.maximum(want, 1e-6)) - np.log(want[0])
    ln = LogNormal(round(float(want[0]), 5), round(max(float(np.dot(z, logs) / np.dot(z, z)), 0.0), 4))

    def misfit(dist: Distribution) -> float:
        return float(np.max(np.abs(np.array([dist.quantile(p) for p in RTT_P]) / want - 1)))

    ln_err = misfit(ln)
    if ln_err <= tolerance:
        return Fit(ln, len(values), source + ", lognormal", ln_err)
    emp = Empirical(tuple(np.round(_grid(np.maximum(values, 1e-4)), 4)))
    return Fit(emp, len(values), source + ", measured quantiles", misfit(emp))


def _idle_mask(t_s: np.ndarray, busy_ms: np.ndarray, workers: int, idle_busy: float, min_rows: int) -> np.ndarray:
    """Requests sent in 0.1 s bins where the server's summed service time stayed under `idle_busy`
    of its workers (no burst to queue behind); the quietest quarter of bins if too few are that idle."""
    cells = np.floor(np.maximum(t_s, 0) / 0.1).astype(np.int64)
    load = np.bincount(cells, weights=busy_ms) / (100.0 * workers)
    mask = load[cells] <= idle_busy
    if mask.sum() < min_rows:
        mask = load[cells] <= quantiles(load[np.unique(cells)], [0.25])[0]
    return mask


def _fit_services(
    names: np.ndarray,
    service_ms: np.ndarray,
    pools: tuple[np.ndarray, np.ndarray],
    what: str,
    min_samples: int,
    tolerance: float,
) -> dict[str, Fit]:
    """One fit per endpoint with `min_samples` usable rows, and `default` for the others (from
    their rows if 10 or more, else from all). `pools`: the usable rows of the window, then of
    the whole run, taken in that order: an endpoint the window holds too few of (the operator's
    task wave comes at the fleet's arrival, before the window) is fitted from the whole run."""
    service: dict[str, Fit] = {}
    for name in sorted(set(names[pools[0] | pools[1]]) - {""}):
        for pool, where in zip(pools, ("", " (whole run)"), strict=True):
            rows = pool & (names == name)
            if rows.sum() >= min_samples:
                service[name] = fit_service(service_ms[rows], f"{what}, {name}{where}", tolerance)
                break
    for pool, where in zip(pools, ("", ", whole run"), strict=True):
        rest = pool & ~np.isin(names, list(service))
        if rest.sum() >= 10:
            default = fit_service(service_ms[rest], f"{what}, other endpoints{where}", tolerance)
            break
    else:
        default = fit_service(service_ms[pools[0]], f"{what}, all", tolerance)
    return {"default": default, **service}


def calibrate(
    run: Run | str | Path,
    base: Scenario | None = None,
    *,
    overhead_ms: float | None = None,
    workers: int | None = None,
    rtt_ms: float | None = None,
    from_latency: bool = False,
    min_samples: int = 30,
    tolerance: float = 0.10,
    idle_busy: float = 0.5,
    after_s: float = 0.0,
    probe: Run | str | Path | None = None,
    probe_after_s: float | None = None,
    _probed: tuple[Capacity, str, float] | None = None,
    _idle_ms: float = 0.0,
) -> Calibration:
    """Fit the simulated server to `run` (see the module docstring); `base` defaults to the run's scenario.

    `after_s` leaves out requests sent before it (a warm-up: the fleet arriving, Locust starting users).
    `probe`: a run whose load went past the server's capacity; it gives the number of workers
    (unless `workers` is given) and the capacity (`sim.report.calibrate_probe`), from its
    requests sent after `probe_after_s` (default: `after_s`).
    """
    run = run if isinstance(run, Run) else load_run(run)
    manifest = run.manifest
    executor = str(manifest.get("executor", "?"))
    if base is None:
        if not isinstance(manifest.get("scenario"), dict):
            raise CalibrationError(f"{run.path}: the manifest holds no scenario; pass the base scenario")
        base = validate_scenario(manifest["scenario"], source=f"{run.path}/manifest.json")
    req = run.requests
    answered = req["ok"].to_numpy(dtype=bool) & np.isfinite(req["latency_ms"].to_numpy(dtype=float))
    keep = answered & (req["t_start_s"].to_numpy(dtype=float) >= after_s)
    first_in_all = which.first_in(req)
    first_in = first_in_all[keep]
    names_all = which.named(run.requests, base.server.liveness if executor != "des" else None)
    # The whole run's answered requests, for the endpoints the window holds too few of (_fit_services).
    run_names = names_all[answered]
    run_server = req.loc[answered, "server_ms"].to_numpy(dtype=float, na_value=np.nan)
    run_usable = first_in_all[answered] if executor != "des" else np.ones(len(run_names), bool)
    in_window = keep[answered]
    req = req[keep]
    if len(req) < min_samples:
        raise CalibrationError(f"{run.path}: {len(req)} successful requests; calibration needs at least {min_samples}")
    names = names_all[keep]
    latency = req["latency_ms"].to_numpy(dtype=float)
    server = req["server_ms"].to_numpy(dtype=float, na_value=np.nan)
    wait = np.nan_to_num(req["queue_wait_ms"].to_numpy(dtype=float, na_value=np.nan))
    has_server = not from_latency and np.isfinite(server).mean() > 0.9
    notes: list[str] = []

    if workers is not None:
        n_workers, workers_source = workers, "given (--workers)"
    elif executor == "des":
        n_workers, workers_source = base.server.workers, "the simulated server's own"
    elif isinstance(manifest.get("server_workers"), int):
        n_workers, workers_source = int(manifest["server_workers"]), "the manifest's server_workers"
    else:
        n_workers, workers_source = 1, "smsload serve runs one granian worker: one request at a time"

    if not has_server:
        overhead, overhead_source = (
            0.0,
            "none: without server time the service time is all of latency above the round trip",
        )
    elif overhead_ms is not None:
        overhead, overhead_source = float(overhead_ms), "given (--overhead-ms)"
    elif executor == "des":
        overhead, overhead_source = 0.0, "0: a simulation's service time is the worker's whole occupancy"
    else:
        overhead, overhead_source = (
            DEFAULT_OVERHEAD_MS,
            ("default: granian's CPU per plain ASGI request (benchmarks/server), not measured in this run"),
        )

    t_s = req["t_start_s"].to_numpy(dtype=float)
    outside: dict[str, float] = {}
    if has_server:
        # A simulation's service time is its own whatever ran meanwhile: all of its requests.
        clean = first_in if executor != "des" and first_in.sum() >= min_samples else np.ones(len(first_in), bool)
        # The whole run's handler and service times; the window's are their rows `in_window`.
        run_handler = np.where(np.isfinite(run_server), run_server, np.nanmedian(server))
        handler = run_handler[in_window]
        offsets = {} if executor == "des" else which.outside_offsets(names, latency - handler, first_in, min_samples)
        outside = {name: max(0.0, overhead + offset) for name, offset in offsets.items()}
        run_service = run_handler + pd.Series(run_names).map(outside).fillna(overhead).to_numpy(dtype=float)
        # Back to back (the probe's c / X) where a request that found its worker free took _idle_ms more (below).
        run_service = np.maximum(run_service - _idle_ms, 0.0)
        service_ms = run_service[in_window]
        what = "server_ms + outside" if overhead or outside else "server_ms"
        window_clean = np.zeros(len(run_names), bool)
        window_clean[np.flatnonzero(in_window)[clean]] = True
        service = _fit_services(run_names, run_service, (window_clean, run_usable), what, min_samples, tolerance)
        wrote = names == POLL_WRITE
        if wrote.sum() >= min_samples:
            # Coalesced visits come in waves (a fleet that arrived together), so few are first in;
            # the poll answers without awaiting anything, so its Server-Timing is its own anyway.
            service[POLL_WRITE] = fit_service(service_ms[wrote], f"{what}, {POLL_WRITE} (all)", tolerance)
        # The server's load from the fitted mean service of each request: its own Server-Timing
        # is inflated exactly when the server is busy (interleaved handlers).
        mean_of = {name: fit.dist.mean for name, fit in service.items()}
        busy = pd.Series(names).map(mean_of).fillna(mean_of["default"]).to_numpy(dtype=float)
        idle = _idle_mask(t_s, busy, n_workers, idle_busy, min_samples)
        if executor != "des" and first_in.sum() >= min_samples:
            # Nothing queued ahead of them: a request in an idle bin may still have waited for
            # one before it (a service time, ~5 ms on the knee rig), which the simulation adds again.
            idle = first_in
        rest = latency - (service_ms + _idle_ms) - wait  # `idle` requests found their worker free
        rtt = fit_rtt(
            rest[idle] if rtt_ms is None else np.array([rtt_ms]),
            "latency - server_ms - overhead at low load" if rtt_ms is None else "given (--rtt-ms)",
            tolerance,
        )
    else:
        idle = _idle_mask(t_s, latency, n_workers, idle_busy, min_samples)
        r0 = float(quantiles(latency[idle], [0.01])[0]) if rtt_ms is None else float(rtt_ms)
        rtt = Fit(
            Constant(round(r0, 4)),
            int(idle.sum()),
            "p1 of low-load latency (a constant)" if rtt_ms is None else "given (--rtt-ms)",
            0.0,
        )
        service = _fit_services(names, latency - r0, (idle, idle), "low-load latency - rtt", min_samples, tolerance)
        notes.append(
            "No server time in this run: each request's service time is its low-load latency minus a "
            "constant round trip, so the client's own variation counts as service and the simulated "
            "server saturates earlier than the real one."
        )

    mean_of = {name: fit.dist.mean for name, fit in service.items()}
    busy_ms = pd.Series(names).map(mean_of).fillna(mean_of["default"]).to_numpy(dtype=float)
    span_s = max(float(t_s.max() - t_s.min()), 1e-9)
    capacity = None
    probe_id = ""
    offered_over = 0.0
    if probe is not None or _probed is not None:
        if _probed is None:
            assert probe is not None
            probe_run = probe if isinstance(probe, Run) else load_run(probe)
            probe_after = after_s if probe_after_s is None else probe_after_s
            _probed = _probe(probe_run, mean_of, probe_after, base.server.liveness if executor != "des" else None)
        capacity, probe_id, offered_over = _probed
        notes += list(capacity.notes)
        # The probe measured what occupies the worker per request in all: c / X. The low run's
        # handler time + default overhead is short of it by the server's time outside the
        # handler (HTTP, ASGI, the event loop), which only a saturated server shows.
        n = workers or capacity.servers
        per_request_ms = n * 1000.0 / capacity.throughput_per_s
        gap_ms = per_request_ms - capacity.mean_service_ms
        # Any gap: the simulated server must saturate where the probe's did. (Within 1% of the
        # service it used to be left out, and the default overhead stood for it: on the knee rig a
        # gap of -0.038 ms set the simulated capacity 0.8% under the probe's; at 90% of capacity
        # that is about 9% of the queue's wait.)
        if has_server and overhead_ms is None and executor != "des" and abs(gap_ms) > 1e-6:
            # A negative gap: the probe's server took less per request, back to back, than the low
            # run's requests took, each of which found its worker free (on the knee rig's PostgreSQL
            # store a poll's handler took 5.80 ms at half load and 5.33 ms saturated: a core woken
            # from idle; or the machine was slower while the low run ran). Every service time is
            # that much less, and a request that finds its worker free takes it again
            # (`idle_start_ms`): the simulated server saturates where the probe's did and answers at
            # low load as the low run's did. (Scaling every service time down to c / X, as before,
            # made the simulated server too fast below saturation.)
            woke_ms = -gap_ms if gap_ms < 0 else 0.0
            again = calibrate(
                run,
                base,
                overhead_ms=overhead if woke_ms else overhead + gap_ms,
                workers=n,
                rtt_ms=rtt_ms,
                min_samples=min_samples,
                tolerance=tolerance,
                idle_busy=idle_busy,
                after_s=after_s,
                _probed=_probed,
                _idle_ms=woke_ms,
            )
            x = capacity.throughput_per_s
            took = f"the probe: {n} server(s) at {x:.1f}/s take {per_request_ms:.3f} ms per request"
            return replace(
                again,
                overhead_source=f"{took}, {gap_ms:+.3f} ms beyond the handler time + {overhead:g} ms"
                if not woke_ms
                else f"{took}, {woke_ms:.3f} ms less than the handler time + {overhead:g} ms: that much more for a "
                "request that finds its worker free (idle_start_ms)",
                workers_source=again.workers_source
                if workers is not None
                else f"the probe {probe_id}: saturated throughput {capacity.throughput_per_s:.1f}/s x mean "
                f"service {capacity.mean_service_ms:.3f} ms = {capacity.servers_raw:.2f} servers, rounded",
            )
        if workers is None:
            n_workers = capacity.servers
            workers_source = (
                f"the probe {probe_id}: saturated throughput {capacity.throughput_per_s:.1f}/s x mean service "
                f"{capacity.mean_service_ms:.3f} ms = {capacity.servers_raw:.2f} servers, rounded"
            )
    utilisation = float(busy_ms.sum()) / (span_s * 1000.0 * n_workers)
    server_section: dict[str, Any] = {
        "calibrated": {
            "run_id": str(manifest.get("run_id", run.path.name)),
            "utilisation": round(utilisation, 4),
            "probe_run_id": probe_id,
            "capacity_per_s": round(capacity.throughput_per_s, 3) if capacity else 0.0,
            "probe_offered_over_capacity": round(offered_over, 3),
        },
        "workers": n_workers,
        "write_lock": base.server.write_lock,
        # A reference-server worker is one event loop: a request with a body queues again per await.
        "requeue_bodies": BODY_PASSES if executor != "des" else base.server.requeue_bodies,
        "requeue_at": REQUEUE_AT if executor != "des" else base.server.requeue_at,
        "idle_start_ms": round(_idle_ms, 4) if executor != "des" else base.server.idle_start_ms,
        "rtt_ms": rtt.dist.to_spec(),
        "service_ms": {name: fit.dist.to_spec() for name, fit in service.items()},
        "liveness": base.server.liveness.to_dict(),  # how the server wrote, not a fit: kept as it was
    }
    scenario = base.with_overrides(fields={"server": server_section})
    return Calibration(
        scenario,
        run.path,
        str(manifest.get("run_id", run.path.name)),
        executor,
        service,
        rtt,
        overhead,
        overhead_source,
        n_workers,
        workers_source,
        int(idle.sum()),
        notes,
        utilisation,
        capacity,
        {"default": overhead, **outside} if has_server else {},
    )


def _probe(
    run: Run, mean_of: dict[str, float], after_s: float, liveness: Liveness | None
) -> tuple[Capacity, str, float]:
    """The probe's capacity (from its successful requests after `after_s`), its id, and its peak
    offered load over that capacity (the scenario's poll rate scaled up by the probe's non-polls).
    `liveness`: the server's, to tell the polls that wrote (None: no split)."""
    req = run.requests
    keep = req["ok"].to_numpy(dtype=bool) & np.isfinite(req["latency_ms"].to_numpy(dtype=float))
    keep &= req["t_start_s"].to_numpy(dtype=float) >= after_s
    names = which.named(req, liveness)[keep]
    req = req[keep]
    busy = pd.Series(names).map(mean_of).fillna(mean_of["default"]).to_numpy(dtype=float)
    t_end = req["t_start_s"].to_numpy(dtype=float) + req["latency_ms"].to_numpy(dtype=float) / 1000.0
    offered = None
    scenario = run.manifest.get("scenario")
    polls = float(np.isin(names, ["poll", "poll_v3", POLL_WRITE]).mean()) if len(names) else 0.0
    if isinstance(scenario, dict) and polls > 0:
        agent = scenario.get("agent", {})
        offered = float(scenario["fleet"]["agents"]) / float(agent.get("poll_interval_s", 5.0)) / polls
    try:
        capacity = fit_capacity(t_end, busy, offered_per_s=offered)
    except ValueError as exc:
        raise CalibrationError(f"{run.path}: {exc}") from None
    probe_id = str(run.manifest.get("run_id", run.path.name))
    return capacity, probe_id, (offered / capacity.throughput_per_s if offered else 0.0)


def calibrate_run(run: Run | str | Path, base: Scenario | None = None, **options: Any) -> Scenario:
    """`base` (default: the run's scenario) with `server:` fitted to `run`; options as `calibrate`."""
    return calibrate(run, base, **options).scenario
