"""summary.json: a run's headline figures, computed from its tables.

Per endpoint ("METHOD /path/template"): count, throughput, error rate and latency
quantiles; the same for all requests; the load generator's lag; tasks created, migrated,
synced, failed and deleted with migration durations; command-dispatch latency. Quantiles
are `sim.records.quantiles` (order statistics), stored unrounded, so a report computed from
the same tables shows the very same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.records.quantiles import QUANTILES, quantiles
from sim.records.unfinished import IN_FLIGHT

_PROBS = np.array(list(QUANTILES.values()))


def stats(values: np.ndarray) -> dict[str, float | None]:
    """p50 .. p99_9 and max (exact order statistics), and the mean (rounded); None for no values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {k: None for k in [*QUANTILES, "mean"]}
    out: dict[str, float | None] = {k: float(q) for k, q in zip(QUANTILES, quantiles(v, _PROBS))}
    out["mean"] = round(float(v.mean()), 4)
    return out


def summarize(requests: pd.DataFrame, tasks: pd.DataFrame, commands: pd.DataFrame, duration_s: float) -> dict[str, Any]:
    """The run's headline figures (deterministic for the same tables)."""
    endpoints: dict[str, Any] = {}
    # Keyed "METHOD /path/template": POST and GET /v3/sources are different endpoints.
    for (method, endpoint), group in requests.groupby(["method", "endpoint"], sort=True, observed=True):
        ok = group["ok"].to_numpy()
        endpoints[f"{method} {endpoint}"] = {
            "count": int(len(group)),
            "throughput_per_s": round(len(group) / duration_s, 4),
            "error_rate": round(float(1 - ok.mean()), 6) if len(group) else 0.0,
            "latency_ms": stats(group["latency_ms"].to_numpy(dtype=float)),
        }
    total = len(requests)
    lag = (requests["t_start_s"] - requests["t_sched_s"]).to_numpy(dtype=float) * 1000 if total else np.empty(0)
    return {
        "duration_s": duration_s,
        "requests": {
            "count": total,
            "throughput_per_s": round(total / duration_s, 4),
            "error_rate": round(float(1 - requests["ok"].mean()), 6) if total else 0.0,
            "latency_ms": stats(requests["latency_ms"].to_numpy(dtype=float)),
        },
        "endpoints": endpoints,
        "generator_lag_ms": stats(lag),
        "tasks": task_summary(tasks),
        "dispatch": dispatch_summary(commands),
    }


def migration_durations(tasks: pd.DataFrame) -> pd.Series:
    """Seconds from each task's first start to its MIGRATE_SUCCESS."""
    starts = tasks[(tasks["trigger"] == "start") & (tasks["from_state"] == "READY")].groupby("task_id")["t_s"].min()
    done = tasks[tasks["to_state"] == "MIGRATE_SUCCESS"].groupby("task_id")["t_s"].min()
    both = pd.concat([starts.rename("start"), done.rename("done")], axis=1).dropna()
    return (both["done"] - both["start"]).sort_index()


def task_summary(tasks: pd.DataFrame) -> dict[str, Any]:
    """Tasks created and reaching each end state; migration durations in seconds."""
    if tasks.empty:
        return {"created": 0, "migrated": 0, "synced": 0, "failed": 0, "deleted": 0, "stuck": 0, "migration_s": {}}
    changed = tasks[tasks["from_state"] != tasks["to_state"]]

    def count(state: str) -> int:
        return int(changed.loc[changed["to_state"] == state, "task_id"].nunique())

    return {
        "created": int(tasks.loc[tasks["trigger"] == "create", "task_id"].nunique()),
        "migrated": count("MIGRATE_SUCCESS"),
        "synced": count("SYNC_SUCCESS"),
        "failed": count("MIGRATE_FAIL"),
        "deleted": count("DELETED"),
        "stuck": len(stuck_tasks(tasks)),
        "migration_s": stats(migration_durations(tasks).to_numpy(dtype=float)),
    }


def stuck_tasks(tasks: pd.DataFrame) -> pd.Series:
    """Each task left in flight at the end of the run (its last state in IN_FLIGHT): task_id -> state.

    The count of a run that predates `sim.records.unfinished` (which tells in flight from stuck)."""
    if tasks.empty:
        return pd.Series(dtype=object)
    last = tasks.sort_values("t_s", kind="stable").groupby("task_id")["to_state"].last()
    return last[last.isin(IN_FLIGHT)].sort_index()


def dispatch_summary(commands: pd.DataFrame) -> dict[str, Any]:
    """Command-dispatch latency: enqueued -> first delivered, delivered -> acknowledged (ms)."""
    if commands.empty:
        return {"commands": 0, "enqueue_to_deliver_ms": stats(np.empty(0)), "deliver_to_ack_ms": stats(np.empty(0))}
    deliver = (commands["delivered_s"] - commands["enqueued_s"]).dropna().to_numpy(dtype=float) * 1000
    ack = (commands["acked_s"] - commands["delivered_s"]).dropna().to_numpy(dtype=float) * 1000
    return {
        "commands": int(len(commands)),
        "enqueue_to_deliver_ms": stats(deliver),
        "deliver_to_ack_ms": stats(ack),
    }
