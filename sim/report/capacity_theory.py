"""Queueing theory beside each sweep point: Erlang C (open) and approximate MVA (closed), and where they disagree.

For each configuration and fleet size of a sweep, the simulated poll (mean over the
replications, with the t interval across them) is put beside
- `erlang_c_p99_ms`: the M/M/c p99 of the poll (`PollQueue`, round trip included), and
  `erlang_c_max_agents`: the largest fleet whose Erlang C quantile meets a poll-latency SLO;
- `mva_mean_ms` and `mva_throughput_per_s`: the closed loop's mean response (round trip
  included) and poll rate by approximate MVA (`capacity_mva`).

The theory applies (`theory_applies`) only where its assumptions hold, by this rule:
exponential poll service times; utilisation of the workers (Erlang C's lambda S / c) below
0.9 (above it a few seconds of virtual time do not reach the steady state the formulas
describe); polls are at least 90 % of the requests (the model has one request class; a
short run of a big fleet is partly registrations); and the write lock is not in play for
polls (liveness writes `off`, or no write lock: a poll that writes waits for the one lock,
which the M/M/c model does not have). Where it applies,
`theory` says `DISAGREES` when Erlang C's p99 or MVA's mean lies outside the simulation's 95 %
interval (the interval needs two replications or more; with one, nothing is flagged).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from sim.model.distributions import Exponential
from sim.model.liveness import LivenessWrite
from sim.report.capacity import POLL, PollQueue
from sim.report.capacity_mva import mva_closed
from sim.report.capacity_sweep import AGENTS, SloArg, config_columns, slos_of
from sim.scenario import Scenario, validate_scenario

MAX_UTILISATION = 0.9
MIN_POLL_SHARE = 0.9


def config_scenario(sweep_df: pd.DataFrame, config: dict[str, Any]) -> Scenario | None:
    """The sweep's scenario with a configuration's varied values (None without sweep.json)."""
    base = sweep_df.attrs.get("sweep", {}).get("scenario")
    if not base:
        return None
    fields = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in config.items() if "." in k}
    return validate_scenario(base).with_overrides(fields=fields)


def _mean_interval(values: pd.Series) -> tuple[float, float, float]:
    v = values.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return (math.nan,) * 3
    if v.size < 2:
        return float(v.mean()), math.nan, math.nan
    half = float(sps.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean()), max(0.0, float(v.mean() - half)), float(v.mean() + half)  # latencies and rates: not below 0


def why_not(scenario: Scenario, utilisation: float, poll_share: float) -> str:
    """Why the theory does not apply at this point ("" when it does); see the module docstring."""
    server = scenario.server
    if not isinstance(server.service_ms_for("poll"), Exponential):
        return "not exponential"
    if not utilisation < MAX_UTILISATION:
        return f"utilisation {utilisation:.2f}"
    if poll_share < MIN_POLL_SHARE:
        return f"polls {poll_share:.0%}"
    if server.write_lock and server.liveness.write != LivenessWrite.OFF:
        return "write lock"
    if getattr(scenario, "faults", None):
        return "faults"
    return ""


def points_table(sweep_df: pd.DataFrame, slo: SloArg = ()) -> pd.DataFrame:
    """Per configuration and fleet size: the simulated poll beside Erlang C and MVA, with the verdict."""
    cols = config_columns(sweep_df)
    poll_q = next((o for o in slos_of(slo) if o.is_latency and o.endpoint == POLL and o.stat.startswith("p")), None)
    rows = []
    for key, group in sweep_df.groupby([*cols, "agents"], sort=True, dropna=False):
        config = dict(zip(cols, key[:-1]))
        agents = int(key[-1])
        p99, p99_lo, p99_hi = _mean_interval(group["p99_ms"])
        mean, mean_lo, mean_hi = _mean_interval(group["mean_ms"])
        thr, _, _ = _mean_interval(group["throughput_per_s"])
        share = float(np.mean([_poll_share(json.loads(t)) for t in group["summary_json"]]) if len(group) else math.nan)
        row: dict[str, Any] = {
            **config,
            "agents": agents,
            "replications": len(group),
            "p99_ms": p99,
            "p99_lo": p99_lo,
            "p99_hi": p99_hi,
            "mean_ms": mean,
            "mean_lo": mean_lo,
            "mean_hi": mean_hi,
            "throughput_per_s": thr,
            "busy_fraction": float(group["busy_fraction"].mean()),
        }
        scenario = config_scenario(sweep_df, {**config, AGENTS: agents})
        if scenario is not None:
            row.update(_theory(scenario, agents, row, share, poll_q.limit if poll_q else None, poll_q))
        rows.append(row)
    return pd.DataFrame(rows)


def _poll_share(summary: dict[str, Any]) -> float:
    total = summary.get("requests", {}).get("count", 0)
    return summary.get("endpoints", {}).get(POLL, {}).get("count", 0) / total if total else math.nan


def _theory(
    scenario: Scenario, agents: int, row: dict[str, Any], share: float, target: Any, slo: Any
) -> dict[str, Any]:
    queue = PollQueue.from_scenario(scenario)
    util = queue.utilisation(agents)
    x, r_s = mva_closed(agents, queue.poll_interval_s, queue.service_ms / 1000, queue.workers)
    out: dict[str, Any] = {
        "utilisation": util,
        "erlang_c_p99_ms": queue.latency_ms(agents, 0.99),
        "mva_mean_ms": r_s * 1000 + queue.rtt_ms,
        "mva_throughput_per_s": x,
    }
    if slo is not None:
        q = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99_9": 0.999}.get(slo.stat)
        out["erlang_c_max_agents"] = queue.max_fleet(target, q) if q else math.nan
    reason = why_not(scenario, util, share)
    out["theory_applies"] = not reason
    if reason:
        out["theory"] = f"n/a: {reason}"
    elif math.isnan(row["p99_lo"]):
        out["theory"] = "no interval (one replication)"
    else:
        off = not (row["p99_lo"] <= out["erlang_c_p99_ms"] <= row["p99_hi"]) or not (
            row["mean_lo"] <= out["mva_mean_ms"] <= row["mean_hi"]
        )
        out["theory"] = "DISAGREES" if off else "agrees"
    return out
