"""How far to trust a prediction: the load it runs at against the load its calibration was checked at.

A calibrated scenario records where `smsload calibrate` fitted it (`server.calibrated`: the
utilisation of the low-load run, and the probe's capacity). A simulation of it reports its
own utilisation (the simulated service time over its duration and workers). Latency was
compared with a measurement only near the calibration run's utilisation; far beyond it
(the demo's 10x fleet, a capacity sweep) the prediction is an extrapolation of the queueing
model, and the page says so. At saturation the throughput is the probe's capacity, which
was measured, when there was a probe.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

BEYOND = 1.25  # a prediction above this times the checked utilisation (and 0.05 above it) is flagged


def simulated_utilisation(requests: pd.DataFrame, manifest: dict[str, Any], duration_s: float) -> float | None:
    """The busy fraction of the simulated server's workers (None for a load test or an empty run)."""
    scenario = manifest.get("scenario")
    if manifest.get("executor") != "des" or not isinstance(scenario, dict) or duration_s <= 0:
        return None
    if manifest.get("latency_histograms"):  # a histogram run has no service times to sum
        return None
    workers = int(scenario.get("server", {}).get("workers", 1))
    busy_ms = float(pd.to_numeric(requests.get("server_ms"), errors="coerce").fillna(0).sum())
    return busy_ms / 1000.0 / (duration_s * workers)


def trust_lines(requests: pd.DataFrame, manifest: dict[str, Any], duration_s: float) -> tuple[list[str], list[str]]:
    """(notes, warnings) for a simulation: where its model was calibrated and checked, and whether
    this run goes beyond that. Nothing for a load test or a scenario that was never calibrated."""
    used = simulated_utilisation(requests, manifest, duration_s)
    at = manifest.get("scenario", {}).get("server", {}).get("calibrated")
    if used is None or not isinstance(at, dict):
        return [], []
    checked = float(at.get("utilisation") or 0.0)
    capacity = float(at.get("capacity_per_s") or 0.0)
    note = (
        f"this prediction runs the simulated server at utilisation {used:.2f}; its model was calibrated "
        f"at utilisation {checked:.2f} (run {at.get('run_id') or '?'})"
    )
    if capacity:
        note += f", and a probe measured its capacity at {capacity:,.1f} requests/s (run {at.get('probe_run_id')})"
    warnings = []
    if math.isfinite(used) and used > max(checked * BEYOND, checked + 0.05):
        warnings.append(
            f"prediction beyond the checked load: utilisation {used:.2f} against {checked:.2f} at calibration; "
            "its latency was never compared with a measurement at this load"
            + ("" if capacity else ", and no capacity probe checked the saturated throughput")
            + " (benchmarks/RESULTS.md 'Fidelity at the knee' says how far the model held)"
        )
    return [note + "."], warnings
