"""Task and command metrics: tasks in each state over time, lifecycle durations, dispatch latency.

From the run's `tasks` table (one row per trigger; a row whose `from_state` differs from its
`to_state` is a state change, a create row has an empty `from_state`) and its `commands`
table (one row per queued command with its enqueue, first-delivery and ack times). Both are
empty for a load test whose server's store the generator cannot read; every function then
returns an empty frame with its usual columns. Durations are exact quantiles (as in
summary.json) with the histogram-bootstrap intervals of `sim.report.hist`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.records import QUANTILES, migration_durations
from sim.report.hist import LEVEL, N_BOOT, quantile_frame

#: Lifecycle order, for columns and legends; DELETED is not an API state (the task is gone).
STATE_ORDER = [
    "READY",
    "RUNNING",
    "MIGRATE_SUCCESS",
    "MIGRATE_FAIL",
    "SYNCING",
    "SYNC_SUCCESS",
    "SYNC_FAIL",
    "ABORTING",
    "ABORT",
    "DELETING",
    "DELETED",
]
DISPATCH_STAGES = {  # stage label -> (from column, to column) of the commands table
    "enqueued -> first delivered": ("enqueued_s", "delivered_s"),
    "delivered -> acknowledged": ("delivered_s", "acked_s"),
    "enqueued -> acknowledged": ("enqueued_s", "acked_s"),
}


def _changes(tasks: pd.DataFrame) -> pd.DataFrame:
    """State changes only, per task in time order (stable: same-time rows keep the table's order)."""
    changed = tasks[tasks["from_state"].fillna("") != tasks["to_state"]]
    return changed.sort_values(["task_id", "t_s"], kind="stable")


def _ordered(states: list[str]) -> list[str]:
    known = [s for s in STATE_ORDER if s in states]
    return known + sorted(s for s in states if s not in STATE_ORDER)


def tasks_by_state(tasks: pd.DataFrame, duration_s: float | None = None, *, bin_s: float = 1.0) -> pd.DataFrame:
    """Number of tasks in each state at t = 0, bin_s, 2 bin_s, ... up to the end: index t_s, one column per state.

    A count at t includes every change at or before t. A task whose first recorded change
    starts from a state (it existed before the run) counts in that state from t = 0.
    """
    changes = _changes(tasks)
    end = float(duration_s) if duration_s else (float(changes["t_s"].max()) if len(changes) else 0.0)
    grid = np.arange(int(np.ceil(end / bin_s - 1e-9)) + 1) * bin_s
    if changes.empty:
        return pd.DataFrame(index=pd.Index(grid, name="t_s"))
    states = _ordered(sorted(set(changes["to_state"]) | set(changes["from_state"].fillna("")) - {""}))
    col = {s: i for i, s in enumerate(states)}
    delta = np.zeros((len(grid), len(states)), np.int64)
    # The first grid point at or after each change is where it starts to count.
    cell = np.ceil(changes["t_s"].to_numpy(dtype=np.float64) / bin_s - 1e-9).astype(np.int64)
    inside = cell < len(grid)
    to_idx = changes["to_state"].map(col).to_numpy(dtype=np.int64)
    np.add.at(delta, (cell[inside], to_idx[inside]), 1)
    src = changes["from_state"].fillna("").to_numpy(dtype=object)
    leaves = inside & (src != "")
    np.add.at(delta, (cell[leaves], [col[s] for s in src[leaves]]), -1)
    first = changes.drop_duplicates("task_id", keep="first")
    existing = first.loc[first["from_state"].fillna("") != "", "from_state"]
    np.add.at(delta, (np.zeros(len(existing), np.int64), existing.map(col).to_numpy(dtype=np.int64)), 1)
    return pd.DataFrame(np.cumsum(delta, axis=0), index=pd.Index(grid, name="t_s"), columns=states)


def state_intervals(tasks: pd.DataFrame) -> pd.DataFrame:
    """Every stay of a task in a state: task_id, state, t_enter_s, t_exit_s, duration_s, next_state.

    A stay still going at the end of the run has t_exit_s, duration_s and next_state null.
    DELETED is terminal and has no stays.
    """
    changes = _changes(tasks)
    out = pd.DataFrame(
        {
            "task_id": changes["task_id"].to_numpy(),
            "state": changes["to_state"].to_numpy(),
            "t_enter_s": changes["t_s"].to_numpy(dtype=np.float64),
        }
    )
    same_task = changes["task_id"].to_numpy()[1:] == changes["task_id"].to_numpy()[:-1]
    nxt = np.append(same_task, False)
    t_next = np.append(out["t_enter_s"].to_numpy()[1:], np.nan)
    out["t_exit_s"] = np.where(nxt, t_next, np.nan)
    out["duration_s"] = out["t_exit_s"] - out["t_enter_s"]
    out["next_state"] = pd.Series(np.append(out["state"].to_numpy()[1:], [None]), dtype=object).where(nxt, None)
    return out[out["state"] != "DELETED"].reset_index(drop=True)


MIGRATION = "migration (first start -> MIGRATE_SUCCESS)"


def lifecycle_table(tasks: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> pd.DataFrame:
    """Seconds spent per stay in each state (index: state, and a `MIGRATION` row), with bootstrap intervals.

    Columns: count (finished stays), open (stays still going at the end), then p50 .. max and
    their NAME_lo / NAME_hi, in seconds.
    """
    stays = state_intervals(tasks)
    states = _ordered(sorted(set(stays["state"])))
    done = stays.dropna(subset=["duration_s"])
    codes = done["state"].map({s: i for i, s in enumerate(states)}).to_numpy(dtype=np.int64)
    table = quantile_frame(done["duration_s"].to_numpy(), codes, states, n_boot=n_boot, seed=seed, level=level)
    migration = migration_durations(tasks).to_numpy(dtype=np.float64) if not tasks.empty else np.empty(0)
    migrations = quantile_frame(
        migration, np.zeros(len(migration), np.int64), [MIGRATION], n_boot=n_boot, seed=seed, level=level
    )
    table = pd.concat([table, migrations])
    open_stays = stays[stays["duration_s"].isna()].groupby("state").size()
    table.insert(1, "open", [int(open_stays.get(s, 0)) for s in table.index])
    table.index.name = "state"
    return table[(table["count"] > 0) | (table["open"] > 0)]


def dispatch_latency(commands: pd.DataFrame) -> pd.DataFrame:
    """Per command: seq, command_name, task_id, enqueued_s, then the ms of each dispatch stage (null if not reached).

    Columns deliver_ms (enqueued -> first delivered: how long the command waited for the agent's
    poll), ack_ms (delivered -> acknowledged: the agent's work until its result) and total_ms.
    """
    c = commands
    return pd.DataFrame(
        {
            "seq": c["seq"].to_numpy(),
            "command_name": c["command_name"].to_numpy(),
            "task_id": c["task_id"].to_numpy(),
            "enqueued_s": c["enqueued_s"].to_numpy(dtype=np.float64, na_value=np.nan),
            "deliver_ms": (c["delivered_s"] - c["enqueued_s"]).to_numpy(dtype=np.float64, na_value=np.nan) * 1000,
            "ack_ms": (c["acked_s"] - c["delivered_s"]).to_numpy(dtype=np.float64, na_value=np.nan) * 1000,
            "total_ms": (c["acked_s"] - c["enqueued_s"]).to_numpy(dtype=np.float64, na_value=np.nan) * 1000,
        }
    )


def dispatch_table(
    commands: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> pd.DataFrame:
    """Command-dispatch latency in ms per stage and command name (and `ALL` commands).

    Columns: stage, command_name, count (commands that reached the stage's end), missing (that
    did not, by the end of the run), then p50 .. max and NAME_lo / NAME_hi.
    """
    names = sorted(set(commands["command_name"])) if not commands.empty else []
    codes = commands["command_name"].map({n: i for i, n in enumerate(names)}).to_numpy(dtype=np.int64)
    frames = []
    for stage, (start, stop) in DISPATCH_STAGES.items():
        ms = (commands[stop] - commands[start]).to_numpy(dtype=np.float64, na_value=np.nan) * 1000
        labels = [f"{stage}: {n}" for n in names]
        total = f"{stage}: ALL" if len(names) > 1 else None
        frame = quantile_frame(ms, codes, labels, total=total, n_boot=n_boot, seed=seed, level=level)
        frame.insert(0, "stage", stage)
        frame.insert(1, "command_name", [*names, "ALL"][: len(frame)])
        started = commands[start].notna().groupby(commands["command_name"]).sum() if names else pd.Series(dtype=int)
        totals = [int(started.get(n, 0)) for n in names] + ([int(started.sum())] if len(names) > 1 else [])
        frame.insert(3, "missing", np.array(totals, dtype=np.int64) - frame["count"].to_numpy())
        frames.append(frame)
    columns = ["stage", "command_name", "count", "missing", *[f"{q}{s}" for q in QUANTILES for s in ("", "_lo", "_hi")]]
    if not frames or not names:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames).reset_index(drop=True)[columns]
