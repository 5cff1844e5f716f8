"""The minute after an outage: peak request rate, time to recover, p99 during recovery, per outage.

A reconnect storm is judged from a run's request rows alone, the same way for a simulation and
a load test, so that the two can be set side by side:

- **before**: the `baseline_s` seconds before the outage began (the whole run before it when
  shorter): the rate of successful requests and the p99 latency of all requests. An outage
  that begins before one window into the run (the fleet comes up while the server is down,
  as after a data-centre restart) has no before; the run's settled end stands in for it: its
  last `baseline_s` seconds, and at most the second half of the time after the outage;
- **peak request rate**: the most requests sent in one `bin_s` bin from the outage's end to
  the end of the run: the storm the server meets when it comes back (during the outage every
  request is turned away at the door, which costs the server nothing);
- **time to recover**: from the outage's end to the start of the first window of `window_s`
  seconds in which the rate of successful requests is within `tolerance` (10 %) of before and
  the p99 latency at most `1 + tolerance` times before; None when the run never got there;
- **p99 during recovery**: the p99 latency of the requests sent from the outage's end until
  it recovered (to the end of the run when it did not).

Windows rather than single bins: with a few hundred requests a second, one second's rate
wanders by more than 10 % by chance alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.records import Run
from sim.records.quantiles import quantiles

__all__ = ["StormMetrics", "outage_windows", "storm_metrics", "storm_of_run"]


@dataclass(frozen=True)
class StormMetrics:
    """How a run came through one outage (see the module docstring); rates per second, latencies in ms."""

    outage_start_s: float
    outage_end_s: float
    before_ok_per_s: float
    before_p99_ms: float
    peak_per_s: float
    peak_at_s: float
    recover_s: float | None  # None: not recovered by the end of the run
    recovery_p99_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def outage_windows(manifest: dict[str, Any]) -> list[tuple[float, float]]:
    """(start, end) of each outage in the run's scenario (its manifest's resolved scenario)."""
    faults = manifest.get("scenario", {}).get("faults", ()) or ()
    return [
        (float(f["start_s"]), float(f["start_s"]) + float(f["duration_s"]))
        for f in faults
        if f.get("kind", "outage") == "outage"
    ]


def _p99(latency_ms: np.ndarray) -> float:
    return float(quantiles(latency_ms, np.array([0.99]))[0]) if latency_ms.size else math.nan


def storm_metrics(
    requests: pd.DataFrame,
    start_s: float,
    end_s: float,
    duration_s: float,
    *,
    bin_s: float = 1.0,
    window_s: float = 5.0,
    baseline_s: float = 30.0,
    tolerance: float = 0.10,
) -> StormMetrics:
    """The storm figures of one outage from `start_s` to `end_s` in a run of `duration_s` (request rows)."""
    t = requests["t_start_s"].to_numpy(dtype=np.float64)
    ok = requests["ok"].to_numpy(dtype=bool)
    latency = requests["latency_ms"].to_numpy(dtype=np.float64)
    lo = max(0.0, start_s - baseline_s)
    hi = start_s
    if start_s - lo < window_s:  # no time before the outage: the run's settled end stands in
        lo, hi = max(end_s + (duration_s - end_s) / 2, duration_s - baseline_s), duration_s
    before = (t >= lo) & (t < hi)
    span = max(hi - lo, 1e-9)
    before_ok = float(ok[before].sum()) / span
    before_p99 = _p99(latency[before])

    n_bins = max(1, int(math.ceil((duration_s - end_s) / bin_s)))
    after = t >= end_s
    cells = np.floor((t[after] - end_s) / bin_s).astype(np.int64)
    counts = np.bincount(cells[cells < n_bins], minlength=n_bins)
    peak_bin = int(np.argmax(counts))
    peak = float(counts[peak_bin]) / bin_s

    recover: float | None = None
    w = end_s
    while w + window_s <= duration_s + 1e-9:
        inside = (t >= w) & (t < w + window_s)
        rate = float(ok[inside].sum()) / window_s
        p99 = _p99(latency[inside])
        if (
            before_ok > 0
            and abs(rate - before_ok) <= tolerance * before_ok
            and not math.isnan(p99)
            and p99 <= (1 + tolerance) * before_p99
        ):
            recover = w - end_s
            break
        w += bin_s
    until = end_s + recover if recover is not None else duration_s
    recovering = (t >= end_s) & (t < max(until, end_s + bin_s))
    return StormMetrics(
        outage_start_s=start_s,
        outage_end_s=end_s,
        before_ok_per_s=before_ok,
        before_p99_ms=before_p99,
        peak_per_s=peak,
        peak_at_s=end_s + peak_bin * bin_s,
        recover_s=recover,
        recovery_p99_ms=_p99(latency[recovering]),
    )


def _histogram_rows(hist: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """A histogram run's counts as rows (one per request: its time bin's start, ok, its bucket's
    geometric middle as latency), and the run's time bin. Latencies are then good to the bucket
    width (1 %), times to the bin: the storm is judged on the run's own bins."""
    counts = hist["count"].to_numpy(dtype=np.int64)
    lo, hi = hist["latency_lo_ms"].to_numpy(dtype=np.float64), hist["latency_hi_ms"].to_numpy(dtype=np.float64)
    middle = np.where(np.isfinite(hi) & (lo > 0), np.sqrt(lo * np.where(np.isfinite(hi), hi, lo)), lo)
    rows = pd.DataFrame(
        {
            "t_start_s": np.repeat(hist["t_bin_s"].to_numpy(dtype=np.float64), counts),
            "ok": np.repeat(hist["ok"].to_numpy(dtype=bool), counts),
            "latency_ms": np.repeat(middle, counts),
        }
    )
    bin_s = float(hist["bin_s"].iloc[0]) if len(hist) else 1.0
    return rows, bin_s


def storm_of_run(run: Run, duration_s: float) -> list[StormMetrics]:
    """The storm figures of every outage of a run: from its request rows, or from its latency
    histograms (the fast engine's runs), on the run's own time bins.

    The window is two poll intervals (at least 5 s): a window shorter than the interval sees
    the fleet's polls unevenly, however steady the fleet is."""
    windows = outage_windows(run.manifest)
    if not windows:
        return []
    requests, bin_s = run.requests, 1.0
    if run.latency_bins is not None:
        requests, bin_s = _histogram_rows(run.histograms)
    if requests.empty:
        return []
    poll = float(run.manifest.get("scenario", {}).get("agent", {}).get("poll_interval_s", 5.0))
    window = max(5.0, 2.0 * poll, bin_s)
    return [storm_metrics(requests, a, b, duration_s, bin_s=bin_s, window_s=window) for a, b in windows]
