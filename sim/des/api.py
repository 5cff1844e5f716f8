"""The SMS API in memory: a `Call` goes to the control plane and comes back as an `Outcome`.

This is what the simulated server does once a request has waited for a worker: the same
control plane and the same JSON views as the reference server, without HTTP or JSON text.
Unit tests step agent and operator models through it by hand, with no engine at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.model.commands import CommandName
from sim.model.controlplane import ControlPlane, Progress, Registration, TaskSpec
from sim.model.errors import InvalidRequest, SmsError
from sim.model.intents import Call, Outcome
from sim.model.lifecycle import Action, OsType, TaskType
from sim.model.store import MemoryStore
from sim.server.views import source_view, task_view

_EMPTY: dict[str, Any] = {}


class InMemoryApi:
    """Answers Calls for one project from a ControlPlane (a fresh in-memory one by default)."""

    def __init__(self, control_plane: ControlPlane | None = None, project: str = "default") -> None:
        self.cp = control_plane or ControlPlane(MemoryStore())
        self.project = project
        self._handlers: dict[str, Callable[[Call, float], Any]] = {
            "register": self._register,
            "poll": self._poll,
            "poll_v3": self._poll,
            "command_result": self._result,
            "progress": self._progress,
            "get_source": self._get_source,
            "list_sources": self._list_sources,
            "create_task": self._create_task,
            "get_task": self._get_task,
            "list_tasks": self._list_tasks,
            "action": self._action,
            "collect_log": self._collect_log,
            "delete_task": self._delete_task,
        }

    def handle(self, call: Call, now: float, latency_s: float = 0.0) -> Outcome:
        """Apply `call` at time `now`; the outcome carries `latency_s` as its latency."""
        try:
            body = self._handlers[call.endpoint](call, now)
        except SmsError as exc:
            return Outcome(exc.http_status, exc.body(), latency_s)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            err = InvalidRequest(f"invalid request for {call.endpoint}: {exc!r}")
            return Outcome(err.http_status, err.body(), latency_s)
        return Outcome(200, body, latency_s)

    # Agent side.
    def _register(self, call: Call, now: float) -> Any:
        b = call.body
        reg = Registration(
            name=b["name"],
            os_type=OsType(b["os_type"]),
            os_version=b.get("os_version", ""),
            ip=b.get("ip", ""),
            hostname=b.get("hostname", ""),
            agent_version=b.get("agent_version", ""),
            total_bytes=sum(int(d.get("size", 0)) for d in b.get("disks", ())),
            id=b.get("id"),
        )
        return {"id": self.cp.register(self.project, reg, now)}

    def _poll(self, call: Call, now: float) -> Any:
        command = self.cp.poll(self.project, call.source_id, now)
        return _EMPTY if command is None else command.to_dict()

    def _result(self, call: Call, now: float) -> Any:
        b = call.body
        try:
            name = CommandName(b["command_name"])
        except ValueError:  # RSET_LOG_ACL and the like: never pending here
            raise SmsError(
                "command reported by the client does not match the server's", code="SMS.2009", http_status=400
            ) from None
        if b["result"] not in ("success", "fail"):
            raise InvalidRequest(f"result must be success or fail, got {b['result']!r}")
        self.cp.report_result(self.project, call.source_id, name, b["result"] == "success", now)
        return _EMPTY

    def _progress(self, call: Call, now: float) -> Any:
        b = call.body
        report = Progress(
            subtask_name=b["subtask_name"],
            progress=int(b["progress"]),
            replicatesize=b.get("replicatesize"),
            totalsize=b.get("totalsize"),
            migrate_speed=b.get("migrate_speed"),
            remain_time=b.get("remain_time"),
            process_trace=b.get("process_trace"),
        )
        self.cp.report_progress(self.project, call.task_id, report, now)
        return _EMPTY

    # Operator side.
    def _get_source(self, call: Call, now: float) -> Any:
        src, task = self.cp.get_source(self.project, call.source_id)
        return source_view(src, task)

    def _list_sources(self, call: Call, now: float) -> Any:
        q = call.query
        count, sources = self.cp.list_sources(
            self.project, limit=int(q.get("limit", 200)), offset=int(q.get("offset", 0))
        )
        views = []
        for src in sources:
            task = self.cp.get_task(self.project, src.current_task_id) if src.current_task_id else None
            views.append(source_view(src, task))
        return {"count": count, "source_servers": views}

    def _create_task(self, call: Call, now: float) -> Any:
        b = call.body
        spec = TaskSpec(
            name=b["name"],
            type=TaskType(b["type"]),
            source_id=b["source_server"]["id"],
            os_type=OsType(b["os_type"]) if b.get("os_type") else None,
            extra={"priority": b.get("priority", 1)},
        )
        return {"id": self.cp.create_task(self.project, spec, now)}

    def _task_view(self, task_id: str) -> Any:
        task = self.cp.get_task(self.project, task_id)
        src, _ = self.cp.get_source(self.project, task.source_id)
        return task_view(task, src.name, src.connected)

    def _get_task(self, call: Call, now: float) -> Any:
        return self._task_view(call.task_id)

    def _list_tasks(self, call: Call, now: float) -> Any:
        q = call.query
        count, tasks = self.cp.list_tasks(self.project, limit=int(q.get("limit", 200)), offset=int(q.get("offset", 0)))
        return {"count": count, "tasks": [self._task_view(t.id) for t in tasks]}

    def _action(self, call: Call, now: float) -> Any:
        action = Action(call.body["operation"])
        if action in (Action.COLLECT_LOG, Action.DELETE):
            raise InvalidRequest(f"operation {action.value} is not a task action here")
        self.cp.act(self.project, call.task_id, action, now)
        return _EMPTY

    def _collect_log(self, call: Call, now: float) -> Any:
        self.cp.act(self.project, call.task_id, Action.COLLECT_LOG, now, log_bucket=call.body["log_bucket"])
        return _EMPTY

    def _delete_task(self, call: Call, now: float) -> Any:
        self.cp.act(self.project, call.task_id, Action.DELETE, now)
        return _EMPTY
