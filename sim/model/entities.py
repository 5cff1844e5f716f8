"""The records the control plane keeps: source servers, tasks with their subtasks, commands, transitions.

Times are plain floats in seconds, on whatever clock the caller passes in (wall-clock epoch
seconds for the reference server, virtual seconds for the simulation). Records turn into
plain JSON-able documents (`to_doc`/`from_doc`) so every store can persist them the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sim.model.commands import Command, CommandName
from sim.model.lifecycle import LogCollectStatus, OsType, Phase, TaskState, TaskType


@dataclass(slots=True)
class Source:
    id: str
    project_id: str
    name: str
    os_type: OsType
    registered_at: float
    os_version: str = ""
    ip: str = ""
    hostname: str = ""
    agent_version: str = ""
    total_bytes: int = 0
    connected: bool = False
    last_visit_time: float | None = None
    current_task_id: str | None = None
    state: str = "waiting"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["os_type"] = self.os_type.value
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Source:
        return cls(**{**doc, "os_type": OsType(doc["os_type"])})


@dataclass(slots=True)
class Subtask:
    id: int
    name: str
    progress: int = 0
    start_date: float | None = None
    end_date: float | None = None


@dataclass(slots=True)
class Task:
    id: str
    project_id: str
    name: str
    type: TaskType
    os_type: OsType
    source_id: str
    create_date: float
    state: TaskState = TaskState.READY
    phase: Phase = Phase.MIGRATE
    prev_state: TaskState | None = None
    log_collect_status: LogCollectStatus | None = None
    sub_tasks: list[Subtask] = field(default_factory=list)
    current: int = 0  # index into sub_tasks of the subtask now running
    phase_start: int = 0  # index into sub_tasks where the current phase's subtasks begin
    start_date: float | None = None
    finish_date: float | None = None
    migrate_speed: float = 0.0
    replicatesize: int = 0
    totalsize: int = 0
    remain_seconds: int = 0
    process_trace: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def current_subtask(self) -> Subtask | None:
        return self.sub_tasks[self.current] if self.sub_tasks else None

    @property
    def subtask_info(self) -> str:
        sub = self.current_subtask
        return "" if sub is None else f"{sub.name}:{sub.progress}"

    def to_doc(self) -> dict[str, Any]:
        # Written out rather than dataclasses.asdict, whose deep copy was half the cost of a
        # progress write on the reference server.
        return {
            "id": self.id,
            "project_id": self.project_id,
            "name": self.name,
            "type": self.type.value,
            "os_type": self.os_type.value,
            "source_id": self.source_id,
            "create_date": self.create_date,
            "state": self.state.value,
            "phase": self.phase.value,
            "prev_state": self.prev_state.value if self.prev_state else None,
            "log_collect_status": self.log_collect_status.value if self.log_collect_status else None,
            "sub_tasks": [
                {"id": s.id, "name": s.name, "progress": s.progress, "start_date": s.start_date, "end_date": s.end_date}
                for s in self.sub_tasks
            ],
            "current": self.current,
            "phase_start": self.phase_start,
            "start_date": self.start_date,
            "finish_date": self.finish_date,
            "migrate_speed": self.migrate_speed,
            "replicatesize": self.replicatesize,
            "totalsize": self.totalsize,
            "remain_seconds": self.remain_seconds,
            "process_trace": self.process_trace,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Task:
        return cls(
            **{
                **doc,
                "type": TaskType(doc["type"]),
                "os_type": OsType(doc["os_type"]),
                "state": TaskState(doc["state"]),
                "phase": Phase(doc["phase"]),
                "prev_state": TaskState(doc["prev_state"]) if doc.get("prev_state") else None,
                "log_collect_status": LogCollectStatus(doc["log_collect_status"])
                if doc.get("log_collect_status")
                else None,
                "sub_tasks": [Subtask(**s) for s in doc["sub_tasks"]],
            }
        )


@dataclass(slots=True)
class CommandRecord:
    """A queued command and its dispatch times: enqueued, first delivered, acknowledged."""

    source_id: str
    task_id: str
    name: CommandName
    param: dict[str, str]
    enqueued_at: float
    seq: int = 0  # assigned by the store; orders the per-source FIFO
    delivered_at: float | None = None
    acked_at: float | None = None
    result: str | None = None  # "success" / "fail" once acknowledged

    def command(self) -> Command:
        return Command(
            self.name,
            task_id=self.param.get("task_id"),
            bucket=self.param.get("bucket"),
            object=self.param.get("object"),
        )


@dataclass(slots=True, frozen=True)
class TaskEvent:
    """One task state transition (from_state == to_state for triggers that keep the state)."""

    t: float
    task_id: str
    source_id: str
    from_state: str
    to_state: str
    trigger: str
    subtask: str = ""
    progress: int = -1
