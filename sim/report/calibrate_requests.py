"""Which requests of a load test tell what, for calibration (`sim.report.calibrate`).

- `endpoint_names`: the API core's endpoint name of each request; `named` also tells the polls
  that recorded their agent's visit (`poll_write`), replayed from the server's liveness setting.
- `first_in`: requests sent with nothing in flight: their Server-Timing is the handler's own
  time (nothing queued ahead, nothing from earlier arrivals interleaved) and latency -
  Server-Timing is the round trip plus the server's time outside the handler;
  `outside_offsets` compares endpoints by it.
- `alone`: requests no other overlapped, from send to answer. The choice favours quick
  requests (a slow one is more often overlapped), so calibration does not fit from it; the
  fidelity benchmark's overhead figure still does (benchmarks/fidelity).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.model.intents import ENDPOINTS
from sim.model.liveness import Liveness, LivenessWrite
from sim.scenario_server import POLL_WRITE

_NAME_OF = {(method, template): name for name, (method, template) in ENDPOINTS.items()}


def endpoint_names(requests: pd.DataFrame) -> np.ndarray:
    keys = list(zip(requests["method"], requests["endpoint"]))
    return np.array([_NAME_OF.get(k, "") for k in keys], dtype=object)


def polls_that_wrote(requests: pd.DataFrame, names: np.ndarray, liveness: Liveness) -> np.ndarray:
    """The polls that recorded their agent's visit, replayed with the server's `liveness` from
    each agent's registration (which counts as a visit) and its polls in order, at their send
    times (a poll within a few ms of the coalescing gap may land on either side)."""
    wrote = np.zeros(len(requests), bool)
    if liveness.write is LivenessWrite.OFF:
        return wrote
    polls = np.isin(names, ["poll", "poll_v3"])
    if liveness.write is LivenessWrite.EVERY_POLL:
        return polls
    agent = requests["agent_id"].to_numpy()
    t_s = requests["t_start_s"].to_numpy(dtype=float)
    registers = names == "register"
    last: dict[Any, float] = {}
    for i in np.argsort(t_s, kind="stable"):
        if registers[i]:
            last[agent[i]] = t_s[i]
        elif polls[i] and liveness.due(True, last.get(agent[i]), t_s[i]):
            wrote[i], last[agent[i]] = True, t_s[i]
    return wrote


def named(requests: pd.DataFrame, liveness: Liveness | None) -> np.ndarray:
    """Endpoint names, with `poll_write` for the polls that recorded a visit (`liveness` given: a
    load test; a simulation logs a writing poll's service as the poll's). All requests, so that
    each agent's registration is seen before its polls."""
    names = endpoint_names(requests)
    if liveness is not None:
        ok = requests["ok"].to_numpy(dtype=bool)
        wrote = np.zeros(len(requests), bool)
        wrote[ok] = polls_that_wrote(requests[ok], names[ok], liveness)
        names[wrote] = POLL_WRITE
    return names


def alone(requests: pd.DataFrame) -> np.ndarray:
    """Requests no other request overlapped, from send to answer (as the client saw them). Only
    for these is `server_ms` the handler's own time: the handlers await (reading the body), and
    while one waits the event loop runs others, whose time then counts in its Server-Timing."""
    start = requests["t_start_s"].to_numpy(dtype=float)
    end = start + np.nan_to_num(requests["latency_ms"].to_numpy(dtype=float)) / 1000.0
    started_before_end = np.searchsorted(np.sort(start), end, side="left")
    ended_before_start = np.searchsorted(np.sort(end), start, side="right")
    return started_before_end - ended_before_start - 1 == 0  # minus the request itself


def outside_offsets(names: np.ndarray, beyond_ms: np.ndarray, usable: np.ndarray, min_samples: int) -> dict[str, float]:
    """Endpoint -> how much longer than the quickest endpoint it spends outside its handler (ms).

    `beyond_ms` = latency - Server-Timing of each request; for `usable` ones (sent with nothing
    in flight: `first_in`) that is the round trip plus the server's time outside the handler
    (a later arrival's time lands inside the handler's Server-Timing, not in this). The round trip is the same
    for every endpoint, so the difference of two endpoints' medians is the difference of their
    outside times. Offsets are from the endpoint that spends least outside its handler, whose
    level is `overhead_ms` (the default: granian's time for a plain request; with a probe, moved
    so that the mix's mean service is c / X). Endpoints with fewer than `min_samples` usable
    requests get none; with fewer than two such endpoints, none do."""
    medians = {}
    for name in sorted(set(names[usable]) - {""}):
        rows = usable & (names == name)
        if rows.sum() >= min_samples:
            medians[name] = float(np.median(beyond_ms[rows]))
    if len(medians) < 2:
        return {}
    least = min(medians.values())
    return {n: round(m - least, 4) for n, m in medians.items()}


def in_flight(requests: pd.DataFrame) -> np.ndarray:
    """For each request, how many others were in flight (sent, not yet answered, as the client
    saw them) when it was sent; a request without a latency counts as answered at once."""
    start = requests["t_start_s"].to_numpy(dtype=float)
    end = start + np.nan_to_num(requests["latency_ms"].to_numpy(dtype=float)) / 1000.0
    started_before = np.searchsorted(np.sort(start), start, side="left")
    ended_before = np.searchsorted(np.sort(end), start, side="right")
    return started_before - ended_before


def first_in(requests: pd.DataFrame) -> np.ndarray:
    """Requests sent while no other was in flight (as the client saw them): nothing ahead of them
    at the server. Unlike `alone`, the choice does not depend on the request's own duration, so
    it does not favour requests with short round trips, which would bias a slower endpoint's."""
    return in_flight(requests) == 0


__all__ = ["alone", "endpoint_names", "first_in", "in_flight", "named", "outside_offsets", "polls_that_wrote"]
