"""Task and command metrics on hand-built tables, and on a real simulation run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sim.records import load_run
from sim.report import metrics as M
from sim.report.tasks import MIGRATION

COLUMNS = ["t_s", "task_id", "from_state", "to_state", "trigger"]


def tasks_table(rows: list[tuple[float, str, str, str, str]]) -> pd.DataFrame:
    t = pd.DataFrame(rows, columns=COLUMNS)
    return t.assign(run_id="r", source_id="s", subtask="", progress=-1)


# Task a: created at 0.5, started at 1.2, migrated at 3.5, deleted 4.0 -> 4.5.
# Task b: existed before the run (first seen leaving RUNNING at 2.0), failed.
# A progress row (no state change) must not count.
TASKS = tasks_table(
    [
        (0.5, "a", "", "READY", "create"),
        (1.2, "a", "READY", "RUNNING", "start"),
        (2.0, "b", "RUNNING", "MIGRATE_FAIL", "result:START:fail"),
        (2.5, "a", "RUNNING", "RUNNING", "progress"),
        (3.5, "a", "RUNNING", "MIGRATE_SUCCESS", "progress:last-subtask-100"),
        (4.0, "a", "MIGRATE_SUCCESS", "DELETING", "delete"),
        (4.5, "a", "DELETING", "DELETED", "result:DELETE:success"),
    ]
)


def test_tasks_by_state_over_time() -> None:
    frame = M.tasks_by_state(TASKS, duration_s=5.0)
    assert list(frame.index) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert list(frame.columns) == ["READY", "RUNNING", "MIGRATE_SUCCESS", "MIGRATE_FAIL", "DELETING", "DELETED"]
    expected = {  # counts at each whole second, changes at or before it included
        0.0: {"RUNNING": 1},
        1.0: {"READY": 1, "RUNNING": 1},
        2.0: {"RUNNING": 1, "MIGRATE_FAIL": 1},
        3.0: {"RUNNING": 1, "MIGRATE_FAIL": 1},
        4.0: {"MIGRATE_FAIL": 1, "DELETING": 1},
        5.0: {"MIGRATE_FAIL": 1, "DELETED": 1},
    }
    for t, counts in expected.items():
        assert frame.loc[t].to_dict() == {s: counts.get(s, 0) for s in frame.columns}, t
    assert (frame.sum(axis=1) <= 2).all()
    assert M.tasks_by_state(TASKS.iloc[:0], duration_s=2.0).shape == (3, 0)


def test_state_intervals_and_lifecycle_durations() -> None:
    stays = M.state_intervals(TASKS)
    a = stays[stays["task_id"] == "a"].set_index("state")
    assert math.isclose(a.loc["READY", "duration_s"], 0.7)
    assert math.isclose(a.loc["RUNNING", "duration_s"], 2.3) and a.loc["RUNNING", "next_state"] == "MIGRATE_SUCCESS"
    assert math.isclose(a.loc["DELETING", "duration_s"], 0.5) and "DELETED" not in a.index
    b = stays[stays["task_id"] == "b"].iloc[0]
    assert b["state"] == "MIGRATE_FAIL" and math.isnan(b["t_exit_s"])  # still failed when the run ended
    table = M.lifecycle_table(TASKS, n_boot=200)
    assert table.loc["MIGRATE_FAIL", "count"] == 0 and table.loc["MIGRATE_FAIL", "open"] == 1
    assert math.isclose(table.loc[MIGRATION, "p50"], 2.3, rel_tol=0.006)


def test_dispatch_latency_and_table() -> None:
    commands = pd.DataFrame(
        {
            "run_id": "r",
            "seq": [1, 2, 3],
            "source_id": "s",
            "task_id": ["a", "b", "c"],
            "command_name": ["START", "START", "DELETE"],
            "enqueued_s": [1.0, 2.0, 3.0],
            "delivered_s": [1.5, 2.25, np.nan],
            "acked_s": [1.6, np.nan, np.nan],
            "result": ["success", None, None],
        }
    )
    per_command = M.dispatch_latency(commands)
    assert np.allclose(per_command["deliver_ms"].to_numpy()[:2], [500, 250])
    assert math.isnan(per_command["ack_ms"].iloc[1]) and math.isclose(per_command["total_ms"].iloc[0], 600)
    table = M.dispatch_table(commands, n_boot=200).set_index(["stage", "command_name"])
    first = table.loc[("enqueued -> first delivered", "START")]
    assert (first["count"], first["missing"]) == (2, 0) and math.isclose(first["max"], 500, rel_tol=0.006)
    assert tuple(table.loc[("enqueued -> first delivered", "DELETE"), ["count", "missing"]]) == (0, 1)
    assert tuple(table.loc[("delivered -> acknowledged", "ALL"), ["count", "missing"]]) == (1, 1)
    assert M.dispatch_table(commands.iloc[:0]).empty


def test_on_a_simulation_run(runs: dict[str, Path]) -> None:
    run = load_run(runs["sim"])
    frame = M.tasks_by_state(run.tasks, duration_s=60.0)
    created = run.tasks.loc[run.tasks["trigger"] == "create", "task_id"].nunique()
    assert created == 20 and frame.iloc[-1].sum() == created  # every task is somewhere (or DELETED) at the end
    assert (frame.to_numpy() >= 0).all()
    dispatch = M.dispatch_table(run.commands)
    total = dispatch[(dispatch["stage"] == "enqueued -> first delivered") & (dispatch["command_name"] == "ALL")].iloc[0]
    assert total["count"] + total["missing"] == len(run.commands)
