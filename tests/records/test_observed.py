"""Task and command tables rebuilt from request rows, checked against the control plane's own tables.

A simulation writes both: the tables of its control plane and the request rows of its
agents and operator. Rebuilt from the rows alone, the tables must agree with the real ones
on every command and on every state change they claim (the last changes of a task may stay
unknown when nothing after them shows them).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim.des.run import run_des
from sim.records import Run, load_run, summarize
from sim.records.observed import observed_tables
from sim.scenario import load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    # Every branch of the lifecycle: stops and resumes, failures and restarts, log collection.
    scenario = load_scenario(QUICKSTART).with_overrides(
        fields={
            "agent.failure_probability": 0.5,
            "operator.stop_probability": 0.5,
            "operator.log_collect_probability": 0.5,
        }
    )
    return load_run(run_des(scenario, tmp_path_factory.mktemp("observed") / "run"))


def _changes(tasks: pd.DataFrame) -> dict[str, list[str]]:
    changed = tasks[tasks["from_state"] != tasks["to_state"]]
    return {task: list(rows["to_state"]) for task, rows in changed.groupby("task_id", sort=False)}


def _is_subsequence(part: list[str], whole: list[str]) -> bool:
    rest = iter(whole)
    return all(state in rest for state in part)


def test_every_command_is_seen_with_its_dispatch_times(run: Run) -> None:
    _, commands = observed_tables("r", run.requests)
    # Every delivered command is seen; one queued at the very end may not be (nothing shows what it was).
    keys = ["task_id", "command_name", "enqueued_s"]
    observed = commands.to_pandas()
    seen = observed[observed["delivered_s"].notna()].sort_values(keys, ignore_index=True)
    true = run.commands[run.commands["delivered_s"].notna()].sort_values(keys, ignore_index=True)
    assert len(true) > 80 and set(true["command_name"]) == {"START", "STOP", "SYNC", "DELETE", "UPLOAD_LOG"}
    assert list(seen["task_id"]) == list(true["task_id"])
    assert list(seen["command_name"]) == list(true["command_name"])
    # Seen when the answers came back: after the server's moment, by no more than a round trip.
    for column in ("enqueued_s", "delivered_s", "acked_s"):
        assert (seen[column].isna() == true[column].isna()).all(), column
        late = (seen[column] - true[column]).dropna()
        assert ((late >= 0) & (late < 0.05)).all(), column
    assert len(observed) - len(seen) <= len(run.commands) - len(true)
    assert list(observed["seq"]) == list(range(1, len(observed) + 1))
    assert observed["source_id"].isna().all() and observed["result"].isna().all()  # unknown: null


def test_every_state_change_claimed_happened_in_that_order(run: Run) -> None:
    tasks, _ = observed_tables("r", run.requests)
    seen, true = _changes(tasks.to_pandas()), _changes(run.tasks)
    assert set(seen) == set(true) and len(true) == 20
    for task_id, states in true.items():
        assert _is_subsequence(seen[task_id], states), task_id
    assert sum(seen[t] == true[t] for t in true) >= 15  # most histories entirely known
    counts, real = summarize(run.requests, tasks.to_pandas(), run.commands, 60)["tasks"], run.summary["tasks"]
    for key in ("created", "deleted", "failed"):
        assert counts[key] == real[key], key
    assert real["migrated"] - 2 <= counts["migrated"] <= real["migrated"]


def test_no_rows_no_tables(run: Run) -> None:
    tasks, commands = observed_tables("r", run.requests.iloc[:0])
    assert tasks.num_rows == commands.num_rows == 0
