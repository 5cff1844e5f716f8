"""Task lifecycle: states, subtask sequences and the one transition table.

Every operator action and every agent report is a `Trigger`. `TRANSITIONS` has an entry for
every (state, trigger) pair: either a `Move` (the next state and the command to queue for the
agent) or a `Reject` carrying the documented error code. The control plane consults nothing
else to decide what a trigger does to a task's state.

Semantics this project fixes where the public API is silent (see sms-api-reference.md 3.4):
- an operator action moves the task at once (start: READY -> RUNNING) and queues the command;
  STOP and DELETE complete when the agent acknowledges them (ABORTING -> ABORT, DELETING -> gone);
- a successful START/SYNC acknowledgement is bookkeeping: it changes no state;
- a failed START/SYNC (acknowledgement with `result: fail`, or an unsolicited failure report
  for the running task) moves RUNNING -> MIGRATE_FAIL, SYNCING -> SYNC_FAIL;
- a failed STOP or DELETE puts the task back in the state it was in before (`PREVIOUS`);
- `sync` is this project's documented stand-in for the console's "synchronize".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sim.model.commands import CommandName


class TaskState(str, Enum):
    READY = "READY"
    RUNNING = "RUNNING"
    SYNCING = "SYNCING"
    MIGRATE_SUCCESS = "MIGRATE_SUCCESS"
    SYNC_SUCCESS = "SYNC_SUCCESS"
    MIGRATE_FAIL = "MIGRATE_FAIL"
    SYNC_FAIL = "SYNC_FAIL"
    ABORTING = "ABORTING"
    ABORT = "ABORT"
    DELETING = "DELETING"


# Not a state the API shows: the task no longer exists. Used in transition records only.
GONE = "DELETED"


class LogCollectStatus(str, Enum):
    INIT = "INIT"
    UPLOADING = "UPLOADING"
    UPLOAD_FAIL = "UPLOAD_FAIL"
    UPLOADED = "UPLOADED"


class TaskType(str, Enum):
    MIGRATE_FILE = "MIGRATE_FILE"
    MIGRATE_BLOCK = "MIGRATE_BLOCK"


class OsType(str, Enum):
    LINUX = "LINUX"
    WINDOWS = "WINDOWS"


class Phase(str, Enum):
    """Which run of subtasks a task is in: the full migration or an incremental sync."""

    MIGRATE = "migrate"
    SYNC = "sync"


class Action(str, Enum):
    """Operator actions. `collect_log` is `POST /v3/tasks/{id}/log`; `delete` is `DELETE /v3/tasks/{id}`."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SYNC = "sync"
    COLLECT_LOG = "collect_log"
    DELETE = "delete"


class Trigger(str, Enum):
    """Everything that can happen to a task: operator actions and agent reports."""

    START = "start"
    STOP = "stop"
    RESTART = "restart"
    SYNC = "sync"
    COLLECT_LOG = "collect_log"
    DELETE = "delete"
    START_OK = "result:START:success"
    START_FAIL = "result:START:fail"
    STOP_OK = "result:STOP:success"
    STOP_FAIL = "result:STOP:fail"
    SYNC_OK = "result:SYNC:success"
    SYNC_FAIL = "result:SYNC:fail"
    DELETE_OK = "result:DELETE:success"
    DELETE_FAIL = "result:DELETE:fail"
    LOG_OK = "result:UPLOAD_LOG:success"
    LOG_FAIL = "result:UPLOAD_LOG:fail"
    PROGRESS = "progress"
    PROGRESS_LAST = "progress:last-subtask-100"

    @staticmethod
    def for_action(action: Action) -> Trigger:
        return Trigger(action.value)

    @staticmethod
    def for_result(command: CommandName, success: bool) -> Trigger:
        return Trigger(f"result:{command.value}:{'success' if success else 'fail'}")


# Subtask sequences per (task type, OS): the full migration, then the incremental sync.
_MIGRATE: dict[tuple[TaskType, OsType], tuple[str, ...]] = {
    (TaskType.MIGRATE_FILE, OsType.LINUX): (
        "CREATE_CLOUD_SERVER",
        "ATTACH_AGENT_IMAGE",
        "SSL_CONFIG",
        "FORMAT_DISK_LINUX_FILE",
        "MIGRATE_LINUX_FILE",
        "CONFIGURE_LINUX_FILE",
        "DETTACH_AGENT_IMAGE",
    ),
    (TaskType.MIGRATE_BLOCK, OsType.LINUX): (
        "CREATE_CLOUD_SERVER",
        "ATTACH_AGENT_IMAGE",
        "SSL_CONFIG",
        "FORMAT_DISK_LINUX_BLOCK",
        "MIGRATE_LINUX_BLOCK",
        "CONFIGURE_LINUX_BLOCK",
        "DETTACH_AGENT_IMAGE",
    ),
    (TaskType.MIGRATE_BLOCK, OsType.WINDOWS): (
        "CREATE_CLOUD_SERVER",
        "ATTACH_AGENT_IMAGE",
        "SSL_CONFIG",
        "FORMAT_DISK_WINDOWS",
        "MIGRATE_WINDOWS_BLOCK",
        "CONFIGURE_WINDOWS",
        "DETTACH_AGENT_IMAGE",
    ),
}
_SYNC: dict[tuple[TaskType, OsType], tuple[str, ...]] = {
    (TaskType.MIGRATE_FILE, OsType.LINUX): ("SYNC_LINUX_FILE",),
    (TaskType.MIGRATE_BLOCK, OsType.LINUX): ("SYNC_LINUX_BLOCK",),
    (TaskType.MIGRATE_BLOCK, OsType.WINDOWS): ("SYNC_WINDOWS_BLOCK",),
}

# The subtask whose duration is the data transfer (disk size / bandwidth), per phase.
TRANSFER_SUBTASKS = frozenset(
    {
        "MIGRATE_LINUX_FILE",
        "MIGRATE_LINUX_BLOCK",
        "MIGRATE_WINDOWS_BLOCK",
        "SYNC_LINUX_FILE",
        "SYNC_LINUX_BLOCK",
        "SYNC_WINDOWS_BLOCK",
    }
)

ALL_SUBTASK_NAMES = frozenset(
    {
        "CREATE_CLOUD_SERVER",
        "SSL_CONFIG",
        "ATTACH_AGENT_IMAGE",
        "DETTACH_AGENT_IMAGE",
        "FORMAT_DISK_LINUX",
        "FORMAT_DISK_LINUX_FILE",
        "FORMAT_DISK_LINUX_BLOCK",
        "FORMAT_DISK_WINDOWS",
        "MIGRATE_LINUX_FILE",
        "MIGRATE_LINUX_BLOCK",
        "MIGRATE_WINDOWS_BLOCK",
        "CLONE_VM",
        "SYNC_LINUX_FILE",
        "SYNC_LINUX_BLOCK",
        "SYNC_WINDOWS_BLOCK",
        "CONFIGURE_LINUX",
        "CONFIGURE_LINUX_BLOCK",
        "CONFIGURE_LINUX_FILE",
        "CONFIGURE_WINDOWS",
    }
)


def supported(task_type: TaskType, os_type: OsType) -> bool:
    """Windows has block-level migration only (migrate_type WINDOWS_MIGRATE_BLOCK)."""
    return (task_type, os_type) in _MIGRATE


def subtask_sequence(task_type: TaskType, os_type: OsType, phase: Phase) -> tuple[str, ...]:
    """The fixed order of subtasks a task of this type and OS runs in `phase`."""
    table = _MIGRATE if phase is Phase.MIGRATE else _SYNC
    return table[(task_type, os_type)]


# ---------------------------------------------------------------------------------------------
# The transition table.


class _Previous:
    """Marker: go back to the state the task was in before ABORTING/DELETING (kept on the task)."""

    def __repr__(self) -> str:
        return "PREVIOUS"


PREVIOUS = _Previous()


@dataclass(frozen=True, slots=True)
class Move:
    """A legal trigger: the next state (or PREVIOUS, or GONE) and the command to queue, if any."""

    to: TaskState | _Previous | str
    command: CommandName | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """An illegal trigger, answered with this error code."""

    code: str
    msg: str


S = TaskState
T = Trigger
_ALL = tuple(TaskState)
_RUNNING_OR_STOPPING = (S.RUNNING, S.SYNCING, S.ABORTING)

_PAUSE_ONLY_RUNNING = Reject("SMS.1038", "only tasks being created or running can be paused")
_RESUME_ONLY_PAUSED = Reject("SMS.1039", "only paused (or not yet started) tasks can be started")
_RESTART_ONLY_FAILED = Reject("SMS.1040", "only tasks whose creation or migration failed can be restarted")
_NO_DELETE_RUNNING = Reject("SMS.2015", "cannot delete running or stopping tasks")
_SYNC_ONLY_MIGRATED = Reject("SMS.9804", "only migrated or synchronized tasks can be synchronized")
_BEING_DELETED = Reject("SMS.9804", "the task is being deleted")
_INCONSISTENT = Reject("SMS.2009", "command reported by the client does not match the server's")
_NOT_RUNNING = Reject("SMS.9805", "progress reported for a task that is not running")


def _build() -> dict[tuple[TaskState, Trigger], Move | Reject]:
    t: dict[tuple[TaskState, Trigger], Move | Reject] = {}

    def row(trigger: Trigger, default: Move | Reject, **cells: Move | Reject) -> None:
        for state in _ALL:
            t[(state, trigger)] = cells.get(state.value, default)

    # Operator actions.
    row(
        T.START, _RESUME_ONLY_PAUSED, READY=Move(S.RUNNING, CommandName.START), ABORT=Move(PREVIOUS, CommandName.START)
    )  # resume: back to RUNNING, or SYNCING for a stopped sync
    row(
        T.STOP,
        _PAUSE_ONLY_RUNNING,
        RUNNING=Move(S.ABORTING, CommandName.STOP),
        SYNCING=Move(S.ABORTING, CommandName.STOP),
    )
    row(T.RESTART, _RESTART_ONLY_FAILED, MIGRATE_FAIL=Move(S.RUNNING, CommandName.START))
    row(
        T.SYNC,
        _SYNC_ONLY_MIGRATED,
        DELETING=_BEING_DELETED,
        MIGRATE_SUCCESS=Move(S.SYNCING, CommandName.SYNC),
        SYNC_SUCCESS=Move(S.SYNCING, CommandName.SYNC),
        SYNC_FAIL=Move(S.SYNCING, CommandName.SYNC),
    )
    # Log collection leaves the state alone; only a task being deleted refuses it.
    for state in _ALL:
        t[(state, T.COLLECT_LOG)] = Move(state, CommandName.UPLOAD_LOG)
    t[(S.DELETING, T.COLLECT_LOG)] = _BEING_DELETED
    row(
        T.DELETE,
        Move(S.DELETING, CommandName.DELETE),
        RUNNING=_NO_DELETE_RUNNING,
        SYNCING=_NO_DELETE_RUNNING,
        ABORTING=_NO_DELETE_RUNNING,
        DELETING=_BEING_DELETED,
    )

    # Agent command results. START can be at the head of the queue in any state but READY
    # (the agent may finish, or the operator move on, before the acknowledgement arrives).
    for state in _ALL:
        t[(state, T.START_OK)] = Move(state)
        t[(state, T.START_FAIL)] = Move(state)
    t[(S.READY, T.START_OK)] = t[(S.READY, T.START_FAIL)] = _INCONSISTENT
    t[(S.RUNNING, T.START_FAIL)] = Move(S.MIGRATE_FAIL)

    sync_seen = (S.SYNCING, S.ABORTING, S.ABORT, S.SYNC_SUCCESS, S.SYNC_FAIL, S.DELETING)
    for state in _ALL:
        t[(state, T.SYNC_OK)] = Move(state) if state in sync_seen else _INCONSISTENT
        t[(state, T.SYNC_FAIL)] = Move(state) if state in sync_seen else _INCONSISTENT
    t[(S.SYNCING, T.SYNC_FAIL)] = Move(S.SYNC_FAIL)

    row(T.STOP_OK, _INCONSISTENT, ABORTING=Move(S.ABORT))
    row(T.STOP_FAIL, _INCONSISTENT, ABORTING=Move(PREVIOUS))
    row(T.DELETE_OK, _INCONSISTENT, DELETING=Move(GONE))
    row(T.DELETE_FAIL, _INCONSISTENT, DELETING=Move(PREVIOUS))
    for state in _ALL:  # log status changes; the task state does not
        t[(state, T.LOG_OK)] = Move(state)
        t[(state, T.LOG_FAIL)] = Move(state)

    # Progress reports.
    for state in _ALL:
        ok = state in _RUNNING_OR_STOPPING
        t[(state, T.PROGRESS)] = Move(state) if ok else _NOT_RUNNING
        t[(state, T.PROGRESS_LAST)] = Move(state) if ok else _NOT_RUNNING
    t[(S.RUNNING, T.PROGRESS_LAST)] = Move(S.MIGRATE_SUCCESS)
    t[(S.SYNCING, T.PROGRESS_LAST)] = Move(S.SYNC_SUCCESS)
    return t


TRANSITIONS: dict[tuple[TaskState, Trigger], Move | Reject] = _build()


def transition(state: TaskState, trigger: Trigger) -> Move | Reject:
    """What `trigger` does to a task in `state`; the table is total."""
    return TRANSITIONS[(state, trigger)]
