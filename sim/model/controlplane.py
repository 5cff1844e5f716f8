"""The control plane: command queues and task states, the same rules for every store.

The reference server and the simulation both call these methods; only the store (SQLite,
PostgreSQL or memory) and the clock (`now`, passed in) differ. Rules:

- per source, a FIFO of pending commands; every poll returns its head until the agent reports
  a `command_result` for it (at-least-once delivery; agents de-duplicate). A result for any
  other command is SMS.2009, except a `fail` for the task's running migration or sync, which is
  the agent's report that it failed (RUNNING -> MIGRATE_FAIL, SYNCING -> SYNC_FAIL);
- each command records when it was enqueued, first delivered and acknowledged;
- a poll records its agent's visit (`last_visit_time`, `connected`) as the `Liveness` policy
  says: every poll, coalesced, or never; `connected` in views and listings is evaluated at the
  request's `now` from the last visit, so it turns false after a silence with no sweeper;
- task states move only as `lifecycle.TRANSITIONS` says; progress goes subtask by subtask and
  never down, and the last subtask at 100 completes the migration (or sync).

Every check happens before anything is changed, so a rejected request changes nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim.model.commands import Command, CommandName
from sim.model.entities import CommandRecord, Source, Subtask, Task, TaskEvent
from sim.model.errors import (
    CommandMismatch,
    Conflict,
    IllegalTransition,
    NotFound,
    ProgressRejected,
    SmsError,
    SourceBusy,
    SourceNotFound,
    UnsupportedOs,
)
from sim.model.lifecycle import (
    GONE,
    PREVIOUS,
    Action,
    LogCollectStatus,
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
from sim.model.liveness import Liveness
from sim.model.store import Store, Tx


@dataclass(frozen=True, slots=True)
class Registration:
    """What an agent tells the server about its source server (the fields the harness uses)."""

    name: str
    os_type: OsType
    os_version: str = ""
    ip: str = ""
    hostname: str = ""
    agent_version: str = ""
    total_bytes: int = 0
    id: str | None = None  # an agent that restarts registers again with the id it was given
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """An operator's new migration task."""

    name: str
    type: TaskType
    source_id: str
    os_type: OsType | None = None  # defaults to the source's
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Progress:
    """An agent's progress report for the subtask it is running."""

    subtask_name: str
    progress: int
    replicatesize: int | None = None
    totalsize: int | None = None
    migrate_speed: float | None = None
    remain_time: int | None = None
    process_trace: str | None = None


def _reject(move: Reject) -> SmsError:
    cls = (
        CommandMismatch
        if move.code == "SMS.2009"
        else (
            Conflict if move.code == "SMS.9804" else ProgressRejected if move.code == "SMS.9805" else IllegalTransition
        )
    )
    return cls(move.msg, code=move.code)


def log_object_name(task_id: str, now: float) -> str:
    """The OBS object an agent uploads its logs to for one log collection."""
    return f"sms-agent-logs/{task_id}/{int(now * 1000)}.tar.gz"


class ControlPlane:
    """The SMS control plane over a store. `new_id` makes source and task ids (uuid4 hex by default);
    `liveness` says when a poll records its agent's visit (coalesced by default, as in production)."""

    def __init__(self, store: Store, new_id: Callable[[], str] | None = None, liveness: Liveness | None = None) -> None:
        self.store = store
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self.liveness = liveness or Liveness()

    # -- agent side -------------------------------------------------------------------------

    def register(self, project: str, reg: Registration, now: float) -> str:
        """The source's id: `reg.id` when it names a source of `project` (an agent registering
        again), else a new one. An id the project does not have, whether no project or another
        one has it, gets a new id alike: answering "already exists" would tell one project
        which ids another holds, and creating sources under ids of the caller's choosing would
        let them collide (an id with `/` could never be polled; concurrent inserts of one id race)."""
        with self.store.write() as tx:
            if reg.id is not None:
                src = tx.get_source(reg.id, lock=True)
                if src is not None and src.project_id == project:
                    src.name, src.os_type, src.os_version = reg.name, reg.os_type, reg.os_version
                    src.ip, src.hostname, src.agent_version = reg.ip, reg.hostname, reg.agent_version
                    src.total_bytes, src.extra = reg.total_bytes, reg.extra
                    src.connected, src.last_visit_time = True, now
                    tx.update_source(src)
                    return src.id
            src = Source(
                id=self._new_id(),
                project_id=project,
                name=reg.name,
                os_type=reg.os_type,
                registered_at=now,
                os_version=reg.os_version,
                ip=reg.ip,
                hostname=reg.hostname,
                agent_version=reg.agent_version,
                total_bytes=reg.total_bytes,
                connected=True,
                last_visit_time=now,
                extra=reg.extra,
            )
            tx.insert_source(src)
            return src.id

    def poll(self, project: str, source_id: str, now: float) -> Command | None:
        """The command at the head of the source's queue (again and again until acknowledged).

        A poll writes only to record a visit (as `liveness` says, and on a reconnect) and on a
        command's first delivery; every other poll is a read."""
        with self.store.read() as tx:
            brief = tx.source_brief(source_id)
            if brief is None or brief[0] != project:
                raise NotFound(f"source server {source_id} not found")
            head = tx.head_command(source_id)
        visit = self.liveness.due(brief[1], brief[2], now)
        if head is None or head.delivered_at is not None:
            if visit:  # the liveness write alone: two columns of one row
                with self.store.write() as tx:
                    tx.touch_source(source_id, now)
            return None if head is None else head.command()
        with self.store.write() as tx:
            src = tx.get_source(source_id, lock=True)
            if src is None:
                raise NotFound(f"source server {source_id} not found")
            if visit:
                tx.touch_source(source_id, now)
            head = tx.head_command(source_id)
            if head is not None and head.delivered_at is None:
                head.delivered_at = now
                tx.update_command(head)
                if head.name is CommandName.UPLOAD_LOG:
                    task = tx.get_task(head.task_id, lock=True)
                    if task is not None and task.log_collect_status is LogCollectStatus.INIT:
                        task.log_collect_status = LogCollectStatus.UPLOADING
                        tx.update_task(task)
            return None if head is None else head.command()

    def poll_would_write(self, project: str, source_id: str, now: float) -> bool:
        """Whether a poll at `now` would write (a visit to record, or a first delivery), changing
        nothing: the simulated server decides with it which service time and lock a poll takes."""
        with self.store.read() as tx:
            brief = tx.source_brief(source_id)
            if brief is None or brief[0] != project:
                return False  # a 404 is a read
            if self.liveness.due(brief[1], brief[2], now):
                return True
            head = tx.head_command(source_id)
        return head is not None and head.delivered_at is None

    def report_result(self, project: str, source_id: str, name: CommandName, success: bool, now: float) -> None:
        """An agent's `command_result`: acknowledges the head command, or reports a failure."""
        trigger = Trigger.for_result(name, success)
        with self.store.write() as tx:
            src = tx.get_source(source_id, lock=True)
            if src is None or src.project_id != project:
                raise NotFound(f"source server {source_id} not found")
            head = tx.head_command(source_id)
            if head is None or head.name is not name:
                # A failure of the running migration or sync is a report, not an acknowledgement:
                # it is accepted whatever is pending (an UPLOAD_LOG may be queued, say).
                task = tx.get_task(src.current_task_id, lock=True) if src.current_task_id else None
                if not success and task is not None:
                    move = transition(task.state, trigger)
                    if isinstance(move, Move) and move.to is not task.state:
                        self._move(tx, task, move, trigger, now)
                        return
                pending = "nothing" if head is None else head.name.value
                raise CommandMismatch(f"reported {name.value} but the pending command is {pending}")
            task = tx.get_task(head.task_id, lock=True)
            move = transition(task.state, trigger) if task is not None else Move(GONE)
            if isinstance(move, Reject):
                raise _reject(move)
            head.acked_at, head.result = now, ("success" if success else "fail")
            if head.delivered_at is None:
                head.delivered_at = now
            tx.update_command(head)
            if task is None:
                return
            if name is CommandName.UPLOAD_LOG:
                task.log_collect_status = LogCollectStatus.UPLOADED if success else LogCollectStatus.UPLOAD_FAIL
            self._move(tx, task, move, trigger, now, src=src)

    def report_progress(self, project: str, task_id: str, report: Progress, now: float) -> TaskState:
        """An agent's progress for one subtask; the last subtask at 100 completes the phase."""
        with self.store.write() as tx:
            task = self._task(tx, project, task_id, lock=True)
            phase_subtasks = task.sub_tasks[task.phase_start :]
            names = [s.name for s in phase_subtasks]
            if report.subtask_name not in names:
                raise ProgressRejected(
                    f"subtask {report.subtask_name} is not part of this task's {task.phase.value} ({', '.join(names)})"
                )
            idx = task.phase_start + names.index(report.subtask_name)
            sub = task.sub_tasks[idx]
            if not 0 <= report.progress <= 100:
                raise ProgressRejected(f"progress must be 0..100, got {report.progress}")
            if report.progress < sub.progress:
                raise ProgressRejected(f"progress of {sub.name} may not go down ({sub.progress} -> {report.progress})")
            last = idx == len(task.sub_tasks) - 1 and report.progress == 100
            trigger = Trigger.PROGRESS_LAST if last else Trigger.PROGRESS
            move = transition(task.state, trigger)
            if isinstance(move, Reject):
                raise _reject(move)
            if idx < task.current:  # a repeat of an earlier subtask's last report: nothing to do
                return task.state
            for earlier in task.sub_tasks[task.current : idx]:  # moving on completes earlier subtasks
                earlier.progress, earlier.end_date = 100, earlier.end_date or now
                earlier.start_date = earlier.start_date or now
            task.current = idx
            sub.progress = report.progress
            sub.start_date = sub.start_date or now
            if report.progress == 100:
                sub.end_date = now
            for attr in ("replicatesize", "totalsize", "migrate_speed", "process_trace"):
                value = getattr(report, attr)
                if value is not None:
                    setattr(task, attr, value)
            if report.remain_time is not None:
                task.remain_seconds = report.remain_time
            self._move(tx, task, move, trigger, now, subtask=sub.name, progress=report.progress)
            return task.state

    # -- operator side ----------------------------------------------------------------------

    def create_task(self, project: str, spec: TaskSpec, now: float) -> str:
        with self.store.read() as tx:
            src = tx.get_source(spec.source_id)
            current = src.current_task_id if src is not None and src.project_id == project else None
        if current is not None:
            self._settle(project, current, now)
        with self.store.write() as tx:
            src = tx.get_source(spec.source_id, lock=True)
            if src is None or src.project_id != project:
                raise SourceNotFound(f"task creation failed: source server {spec.source_id} does not exist")
            os_type = spec.os_type or src.os_type
            if not supported(spec.type, os_type):
                raise UnsupportedOs(f"{spec.type.value} is not supported for {os_type.value} source servers")
            if src.current_task_id is not None:
                raise SourceBusy(f"source server {src.id} already has task {src.current_task_id}")
            names = subtask_sequence(spec.type, os_type, Phase.MIGRATE)
            task = Task(
                id=self._new_id(),
                project_id=project,
                name=spec.name,
                type=spec.type,
                os_type=os_type,
                source_id=src.id,
                create_date=now,
                totalsize=src.total_bytes,
                extra=dict(spec.extra),
                sub_tasks=[Subtask(id=i + 1, name=n) for i, n in enumerate(names)],
            )
            tx.insert_task(task)
            src.current_task_id = task.id
            tx.update_source(src)
            tx.add_event(TaskEvent(now, task.id, src.id, "", TaskState.READY.value, "create"))
            return task.id

    def act(self, project: str, task_id: str, action: Action, now: float, *, log_bucket: str | None = None) -> None:
        """An operator action: start, stop, restart, sync, collect_log (needs `log_bucket`) or delete."""
        trigger = Trigger.for_action(action)
        self._settle(project, task_id, now)  # a STOP or DELETE nobody will acknowledge: completed first
        with self.store.write() as tx:
            task = self._task(tx, project, task_id, lock=True)
            move = transition(task.state, trigger)
            if isinstance(move, Reject):
                raise _reject(move)
            if action is Action.COLLECT_LOG:
                if not log_bucket:
                    raise SmsError("log_bucket is required", code="SMS.9801", http_status=400)
                if task.log_collect_status in (LogCollectStatus.INIT, LogCollectStatus.UPLOADING):
                    raise Conflict("log collection for this task is already in progress")
                task.log_collect_status = LogCollectStatus.INIT
            elif action is Action.RESTART:
                for sub in task.sub_tasks[task.phase_start :]:
                    sub.progress, sub.start_date, sub.end_date = 0, None, None
                task.current = task.phase_start
                task.finish_date = None
            elif action is Action.SYNC:
                names = subtask_sequence(task.type, task.os_type, Phase.SYNC)
                task.phase, task.phase_start = Phase.SYNC, len(task.sub_tasks)
                task.current = task.phase_start
                task.sub_tasks.extend(Subtask(id=len(task.sub_tasks) + i + 1, name=n) for i, n in enumerate(names))
                task.finish_date = None
            elif action is Action.START and task.state is TaskState.READY:
                task.start_date = now
            current = task.current_subtask
            if current is not None and (action is Action.START or action is Action.RESTART or action is Action.SYNC):
                current.start_date = current.start_date or now
            self._move(tx, task, move, trigger, now, log_bucket=log_bucket)
            if action is Action.STOP or action is Action.DELETE:
                self._settle_orphan(tx, task, now)  # the agent is gone already: nobody to tell

    def _settle(self, project: str, task_id: str, now: float) -> None:
        """`_settle_orphan` in a transaction of its own (a later rejection must not undo it);
        a read first, so that the usual case, a task in no such state, writes nothing. Only an
        action of the task's own project settles it: another project's is a 404 that changes nothing."""
        with self.store.read() as tx:
            task = tx.get_task(task_id)
            if task is None or task.project_id != project or task.state not in (TaskState.ABORTING, TaskState.DELETING):
                return
        with self.store.write() as tx:
            task = tx.get_task(task_id, lock=True)
            if task is not None:
                self._settle_orphan(tx, task, now)

    def _settle_orphan(self, tx: Tx, task: Task, now: float) -> bool:
        """Complete a STOP or DELETE that its agent cannot acknowledge; whether it did.

        A task is ABORTING or DELETING until its agent acknowledges the command. An agent that
        is gone never will, and the task would stay so for good, its source refusing new tasks
        (SMS.9806). So once the source shows `connected: false` (silent for the liveness
        policy's `disconnect_after_s`, 90 s by default: the documented timeout), the next
        operator action on the task or its source completes the transition as an
        acknowledgement would (ABORTING -> ABORT, DELETING -> gone) and records the command
        as `expired` (acked_at set, never delivered if it was not)."""
        if task.state is not TaskState.ABORTING and task.state is not TaskState.DELETING:
            return False
        src = tx.get_source(task.source_id, lock=True)
        if src is None or self.liveness.connected(src.connected, src.last_visit_time, now):
            return False
        head = tx.head_command(task.source_id)
        if head is None or head.task_id != task.id or head.name not in (CommandName.STOP, CommandName.DELETE):
            return False
        trigger = Trigger.for_result(head.name, True)
        move = transition(task.state, trigger)
        if isinstance(move, Reject):
            return False
        head.acked_at, head.result = now, "expired"
        tx.update_command(head)
        self._move(tx, task, move, trigger, now, src=src)
        return True

    # -- views ------------------------------------------------------------------------------

    def get_task(self, project: str, task_id: str) -> Task:
        with self.store.read() as tx:
            return self._task(tx, project, task_id)

    def list_tasks(self, project: str, **filters: Any) -> tuple[int, list[Task]]:
        with self.store.read() as tx:
            return tx.list_tasks(project, **filters)

    def get_source(self, project: str, source_id: str, now: float | None = None) -> tuple[Source, Task | None]:
        """A source (`connected` as at `now`; None: as last recorded) and its current task."""
        with self.store.read() as tx:
            src = tx.get_source(source_id)
            if src is None or src.project_id != project:
                raise NotFound(f"source server {source_id} not found")
            return self.as_at(src, now), (tx.get_task(src.current_task_id) if src.current_task_id else None)

    def list_sources(self, project: str, now: float | None = None, **filters: Any) -> tuple[int, list[Source]]:
        """A page of sources; the `connected` filter and each source's `connected` as at `now`."""
        seen_since = None if now is None else self.liveness.seen_since(now)
        with self.store.read() as tx:
            total, page = tx.list_sources(project, seen_since=seen_since, **filters)
        return total, [self.as_at(s, now) for s in page]

    def as_at(self, src: Source, now: float | None) -> Source:
        """`src` with `connected` as at `now`: false after a silence of `liveness.disconnect_after_s`.
        A copy when that differs from the record (the memory store hands out its live records)."""
        connected = self.liveness.connected(src.connected, src.last_visit_time, now)
        return src if connected == src.connected else dataclasses.replace(src, connected=connected)

    # -- internals --------------------------------------------------------------------------

    @staticmethod
    def _task(tx: Tx, project: str, task_id: str, lock: bool = False) -> Task:
        task = tx.get_task(task_id, lock=lock)
        if task is None or task.project_id != project:
            raise NotFound(f"task {task_id} not found")
        return task

    def _move(
        self,
        tx: Tx,
        task: Task,
        move: Move,
        trigger: Trigger,
        now: float,
        *,
        src: Source | None = None,
        log_bucket: str | None = None,
        subtask: str = "",
        progress: int = -1,
    ) -> None:
        """Apply a legal move: set the state, queue its command, record the transition."""
        before = task.state
        after: TaskState | str  # a state, or GONE once a delete is acknowledged
        if move.to is PREVIOUS and before is TaskState.ABORT:
            # A resume goes back to the run that was stopped. Not prev_state: a failed delete
            # since the stop has overwritten it with ABORT.
            after = TaskState.SYNCING if task.phase is Phase.SYNC else TaskState.RUNNING
        elif move.to is PREVIOUS:
            after = task.prev_state or TaskState.RUNNING
        elif move.to == GONE:
            after = GONE
        else:
            assert isinstance(move.to, TaskState)
            after = move.to
        if after in (TaskState.ABORTING, TaskState.DELETING) and before is not after:
            task.prev_state = before
        if (
            after in (TaskState.MIGRATE_SUCCESS, TaskState.SYNC_SUCCESS, TaskState.MIGRATE_FAIL, TaskState.SYNC_FAIL)
            and before is not after
        ):
            task.finish_date = now
        tx.add_event(
            TaskEvent(
                now,
                task.id,
                task.source_id,
                before.value,
                after.value if isinstance(after, TaskState) else after,
                trigger.value,
                subtask,
                progress,
            )
        )
        if move.command is not None:
            if move.command is CommandName.UPLOAD_LOG:
                param = {"bucket": log_bucket or "", "object": log_object_name(task.id, now)}
            else:
                param = {"task_id": task.id}
            tx.add_command(
                CommandRecord(
                    source_id=task.source_id, task_id=task.id, name=move.command, param=param, enqueued_at=now
                )
            )
        if not isinstance(after, TaskState):  # GONE
            tx.delete_task(task.id)
            src = src or tx.get_source(task.source_id, lock=True)
            if src is not None and src.current_task_id == task.id:
                src.current_task_id = None
                tx.update_source(src)
            return
        task.state = after
        tx.update_task(task)
