"""The transition table, cell by cell: every state x every operator action and agent report."""

from __future__ import annotations

import pytest

from sim.model.commands import CommandName
from sim.model.lifecycle import (
    GONE,
    PREVIOUS,
    TRANSITIONS,
    Move,
    OsType,
    Phase,
    Reject,
    TaskState,
    TaskType,
    Trigger,
    subtask_sequence,
    supported,
    transition,
)

# Columns, in order. A cell is one of:
#   =            legal, state unchanged, no command
#   =+CMD        legal, state unchanged, CMD queued
#   STATE        legal, moves to STATE, no command
#   STATE+CMD    legal, moves to STATE and queues CMD
#   PREV / PREV+CMD   back to the state before ABORTING/DELETING
#   GONE         the task is deleted
#   NNNN         rejected with error code SMS.NNNN
COLUMNS = [
    Trigger.START,
    Trigger.STOP,
    Trigger.RESTART,
    Trigger.SYNC,
    Trigger.COLLECT_LOG,
    Trigger.DELETE,
    Trigger.START_OK,
    Trigger.START_FAIL,
    Trigger.STOP_OK,
    Trigger.STOP_FAIL,
    Trigger.SYNC_OK,
    Trigger.SYNC_FAIL,
    Trigger.DELETE_OK,
    Trigger.DELETE_FAIL,
    Trigger.LOG_OK,
    Trigger.LOG_FAIL,
    Trigger.PROGRESS,
    Trigger.PROGRESS_LAST,
]
GRID = """
#               start          stop          restart       sync          log            delete          START_OK START_FAIL   STOP_OK STOP_FAIL SYNC_OK SYNC_FAIL DEL_OK DEL_FAIL LOG_OK LOG_FAIL progress progress_last
READY           RUNNING+START  1038          1040          9804          =+UPLOAD_LOG   DELETING+DELETE 2009     2009         2009    2009      2009    2009      2009   2009     =      =        9805     9805
RUNNING         1039           ABORTING+STOP 1040          9804          =+UPLOAD_LOG   2015            =        MIGRATE_FAIL 2009    2009      2009    2009      2009   2009     =      =        =        MIGRATE_SUCCESS
SYNCING         1039           ABORTING+STOP 1040          9804          =+UPLOAD_LOG   2015            =        =            2009    2009      =       SYNC_FAIL 2009   2009     =      =        =        SYNC_SUCCESS
MIGRATE_SUCCESS 1039           1038          1040          SYNCING+SYNC  =+UPLOAD_LOG   DELETING+DELETE =        =            2009    2009      2009    2009      2009   2009     =      =        9805     9805
SYNC_SUCCESS    1039           1038          1040          SYNCING+SYNC  =+UPLOAD_LOG   DELETING+DELETE =        =            2009    2009      =       =         2009   2009     =      =        9805     9805
MIGRATE_FAIL    1039           1038          RUNNING+START 9804          =+UPLOAD_LOG   DELETING+DELETE =        =            2009    2009      2009    2009      2009   2009     =      =        9805     9805
SYNC_FAIL       1039           1038          1040          SYNCING+SYNC  =+UPLOAD_LOG   DELETING+DELETE =        =            2009    2009      =       =         2009   2009     =      =        9805     9805
ABORTING        1039           1038          1040          9804          =+UPLOAD_LOG   2015            =        =            ABORT   PREV      =       =         2009   2009     =      =        =        =
ABORT           PREV+START     1038          1040          9804          =+UPLOAD_LOG   DELETING+DELETE =        =            2009    2009      =       =         2009   2009     =      =        9805     9805
DELETING        1039           1038          1040          9804          9804           9804            =        =            2009    2009      =       =         GONE   PREV     =      =        9805     9805
"""


def _expected() -> dict[tuple[TaskState, Trigger], str]:
    cells = {}
    rows = [line.split() for line in GRID.strip().splitlines() if not line.startswith("#")]
    for row in rows:
        state, values = TaskState(row[0]), row[1:]
        assert len(values) == len(COLUMNS), f"row {row[0]} has {len(values)} cells"
        for trigger, cell in zip(COLUMNS, values):
            cells[(state, trigger)] = cell
    return cells


def _render(state: TaskState, outcome: Move | Reject) -> str:
    if isinstance(outcome, Reject):
        return outcome.code.removeprefix("SMS.")
    if outcome.to is PREVIOUS:
        target = "PREV"
    elif outcome.to == GONE:
        target = "GONE"
    elif outcome.to is state:
        target = "="
    else:
        target = outcome.to.value
    return target if outcome.command is None else f"{target}+{outcome.command.value}"


EXPECTED = _expected()


def test_grid_covers_every_state_and_trigger() -> None:
    assert set(COLUMNS) == set(Trigger)
    assert set(EXPECTED) == set(TRANSITIONS) == {(s, t) for s in TaskState for t in Trigger}


@pytest.mark.parametrize(
    ("state", "trigger"), sorted(EXPECTED, key=lambda k: (k[0].value, k[1].value)), ids=lambda v: v.value
)
def test_transition_cell(state: TaskState, trigger: Trigger) -> None:
    assert _render(state, transition(state, trigger)) == EXPECTED[(state, trigger)]


def test_rejections_carry_documented_codes() -> None:
    codes = {o.code for o in TRANSITIONS.values() if isinstance(o, Reject)}
    assert codes == {"SMS.1038", "SMS.1039", "SMS.1040", "SMS.2009", "SMS.2015", "SMS.9804", "SMS.9805"}


def test_linux_file_level_subtask_order() -> None:
    assert subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.MIGRATE) == (
        "CREATE_CLOUD_SERVER",
        "ATTACH_AGENT_IMAGE",
        "SSL_CONFIG",
        "FORMAT_DISK_LINUX_FILE",
        "MIGRATE_LINUX_FILE",
        "CONFIGURE_LINUX_FILE",
        "DETTACH_AGENT_IMAGE",
    )
    assert subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.SYNC) == ("SYNC_LINUX_FILE",)


@pytest.mark.parametrize(
    ("task_type", "os_type", "transfer", "sync"),
    [
        (TaskType.MIGRATE_BLOCK, OsType.LINUX, "MIGRATE_LINUX_BLOCK", "SYNC_LINUX_BLOCK"),
        (TaskType.MIGRATE_BLOCK, OsType.WINDOWS, "MIGRATE_WINDOWS_BLOCK", "SYNC_WINDOWS_BLOCK"),
    ],
)
def test_block_and_windows_variants(task_type: TaskType, os_type: OsType, transfer: str, sync: str) -> None:
    seq = subtask_sequence(task_type, os_type, Phase.MIGRATE)
    assert seq[0] == "CREATE_CLOUD_SERVER" and seq[-1] == "DETTACH_AGENT_IMAGE" and transfer in seq
    assert subtask_sequence(task_type, os_type, Phase.SYNC) == (sync,)


def test_windows_file_level_is_unsupported() -> None:
    assert not supported(TaskType.MIGRATE_FILE, OsType.WINDOWS)
    assert supported(TaskType.MIGRATE_BLOCK, OsType.WINDOWS)


def test_result_triggers_map_from_command_results() -> None:
    assert Trigger.for_result(CommandName.STOP, True) is Trigger.STOP_OK
    assert Trigger.for_result(CommandName.UPLOAD_LOG, False) is Trigger.LOG_FAIL


def test_task_document_round_trips_every_field() -> None:
    from dataclasses import asdict, fields

    from sim.model.entities import Subtask, Task
    from sim.model.lifecycle import LogCollectStatus

    task = Task(
        id="t",
        project_id="p",
        name="n",
        type=TaskType.MIGRATE_BLOCK,
        os_type=OsType.WINDOWS,
        source_id="s",
        create_date=1.5,
        state=TaskState.ABORTING,
        phase=Phase.SYNC,
        prev_state=TaskState.SYNCING,
        log_collect_status=LogCollectStatus.UPLOADING,
        sub_tasks=[Subtask(1, "CREATE_CLOUD_SERVER", 100, 2.0, 3.0), Subtask(2, "SYNC_WINDOWS_BLOCK", 40, 4.0)],
        current=1,
        phase_start=1,
        start_date=2.0,
        finish_date=None,
        migrate_speed=12.5,
        replicatesize=10,
        totalsize=20,
        remain_seconds=7,
        process_trace="x",
        extra={"priority": 2},
    )
    doc = task.to_doc()
    assert set(doc) == {f.name for f in fields(Task)}
    assert Task.from_doc(doc) == task
    assert doc == {
        **asdict(task),
        "type": "MIGRATE_BLOCK",
        "os_type": "WINDOWS",
        "state": "ABORTING",
        "phase": "sync",
        "prev_state": "SYNCING",
        "log_collect_status": "UPLOADING",
    }
