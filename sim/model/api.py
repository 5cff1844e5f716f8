"""The SMS API core: one request in, status and body out, over the control plane. Sans-I/O.

Every endpoint's rules live here, once: turning a body into a `Registration`, `Progress` or
`TaskSpec`, defaults (the page size of 200, v1 speeds in MByte/s shown as Mbit/s), checks
(SMS.2009 for a result nobody asked for, the operations the reference server simulates,
query parameters), the JSON views and paging, and a source's `connected` as at the request's
time. The request is a `Call` (the same intent the agent and operator models yield) with a
decoded JSON body, plus the caller's project and the time `now`; the answer is
`(status, body)` with a JSON-compatible body.

Two executors call it:
- the reference server (the `server` package beside this one) does only HTTP: routing a path to an endpoint name,
  content type, size limits, decoding the JSON bytes, tokens, headers, Server-Timing;
- the simulation calls it in memory through `InMemoryApi`, which turns the answer into the
  `Outcome` a model receives.
So the two can differ only in timing, and `tests/model/test_api_conformance.py` sends one list
of calls through both.

Write endpoints whose success the API documents only as "a success string" or "no response
body" (command_result, progress, action, log, delete) answer 200 with `{}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sim.model import views
from sim.model.bodies import (
    REGISTER_EXTRA_FIELDS,
    SIMULATED_OPERATIONS,
    UNSIMULATED_OPERATIONS,
    CollectLogBody,
    CommandResultBody,
    CreateTaskBody,
    ProgressV1Body,
    ProgressV3Body,
    RegisterBody,
    TaskActionBody,
    validate_body,
)
from sim.model.commands import Command, CommandName
from sim.model.controlplane import ControlPlane, Progress, Registration, TaskSpec
from sim.model.entities import Source, Task
from sim.model.errors import CommandMismatch, InvalidRequest, NotFound, SmsError
from sim.model.intents import Call, Outcome
from sim.model.lifecycle import Action, TaskState
from sim.model.store import MemoryStore

Answer = tuple[int, Any]

PAGE_SIZE = 200  # a listing's `limit` 0 (or none) means this
EXPORT_PAGE_SIZE = 10_000  # the export endpoints' default and largest page
MAX_COUNT = 2**31 - 1  # limit/offset beyond this cannot be a real page (and would overflow SQLite)
POLL_ENDPOINTS = frozenset({"poll", "poll_v3"})
_SHARED_EXTRAS = 4096  # distinct registration extras kept for sharing, at most

# The ListTasks `state` filter accepts the current task states and the older filter enum.
TASK_STATE_FILTERS = frozenset(
    {s.value for s in TaskState} | {"SKIPPING", "RESETING", "SYNC_F_ROLLBACKING", "SYNC_F_ROLLBACK_SUCCESS"}
)

_EMPTY: dict[str, Any] = {}


def count_param(query: Mapping[str, Any], name: str, default: int = 0) -> int:
    """A non-negative integer query parameter (`limit`, `offset`); absent means `default`."""
    if name not in query:
        return default
    value = str(query[name])
    # ASCII digits only: str.isdigit() is also true of '²' (which int() refuses) and '٣' (read as 3).
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_COUNT:
        raise InvalidRequest(f"{name}: must be an integer 0..{MAX_COUNT}, got {value!r}")
    return int(value)


def bool_param(query: Mapping[str, Any], name: str) -> bool | None:
    """An optional true/false query parameter (any case); absent means None."""
    if name not in query:
        return None
    value = str(query[name]).lower()
    if value not in ("true", "false"):
        raise InvalidRequest(f"{name}: must be true or false, got {query[name]!r}")
    return value == "true"


def has_nul(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL character in any string (key or value).

    PostgreSQL cannot store one (in TEXT or JSONB), so the API refuses it everywhere alike."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def check_call_text(call: Call) -> None:
    """NotFound for an id with a NUL (no record has one), InvalidRequest for a NUL in the query or body."""
    if "\x00" in call.source_id:
        raise NotFound("source server not found (its id holds a NUL character)")
    if "\x00" in call.task_id:
        raise NotFound("task not found (its id holds a NUL character)")
    for name, value in call.query.items():
        if has_nul(name) or has_nul(str(value)):
            raise InvalidRequest(f"{name!r}: a query parameter may not hold a NUL character")
    if call.body is not None and has_nul(call.body):
        raise InvalidRequest("body: a string may not hold a NUL character")


def poll_doc(command: Command | None) -> dict[str, Any]:
    """A poll's answer: the command, or `{}` when nothing is pending (the public docs are silent)."""
    return _EMPTY if command is None else command.to_dict()


def _str_param(query: Mapping[str, Any], name: str) -> str | None:
    return None if name not in query else str(query[name])


class ApiCore:
    """The API of one control plane (given, or opened on first use by a callable)."""

    def __init__(self, plane: ControlPlane | Callable[[], ControlPlane]) -> None:
        self._plane = plane
        # Registration extras (firmware, cpu_quantity, ...) by content: records only ever replace
        # a source's `extra`, never change it in place, so identical ones can be one dict.
        self._extras: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
        self._handlers: dict[str, Callable[[Call, str, float], Any]] = {
            "register": self._register,
            "poll": self._poll,
            "poll_v3": self._poll,
            "command_result": self._command_result,
            "command_result_v3": self._command_result,
            "progress": self._progress_v3,
            "progress_v1": self._progress_v1,
            "get_source": self._get_source,
            "list_sources": self._list_sources,
            "create_task": self._create_task,
            "get_task": self._get_task,
            "list_tasks": self._list_tasks,
            "action": self._action,
            "collect_log": self._collect_log,
            "delete_task": self._delete_task,
            "export_task_events": self._export_task_events,
            "export_commands": self._export_commands,
        }

    @property
    def plane(self) -> ControlPlane:
        plane = self._plane
        return plane if isinstance(plane, ControlPlane) else plane()

    def handle(self, call: Call, project: str, now: float) -> Answer:
        """Apply `call` for `project` at time `now`: (HTTP status, JSON-compatible body)."""
        try:
            handler = self._handlers[call.endpoint]
        except KeyError:
            raise ValueError(f"unknown endpoint {call.endpoint!r}") from None
        try:
            check_call_text(call)
            return 200, handler(call, project, now)
        except SmsError as exc:
            return exc.http_status, exc.body()

    def poll(self, project: str, source_id: str, now: float) -> Command | None:
        """The poll: the head command of the source's queue, or None when nothing is pending
        (which the API shows as `{}`). Raises NotFound. The server encodes it itself (its fast path)."""
        if "\x00" in source_id:
            raise NotFound("source server not found (its id holds a NUL character)")
        return self.plane.poll(project, source_id, now)

    # -- agent side -------------------------------------------------------------------------

    def _register(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(RegisterBody, call.body)
        extra = {k: v for k in REGISTER_EXTRA_FIELDS if (v := getattr(body, k)) is not None}
        if len(self._extras) < _SHARED_EXTRAS:  # a fleet has few distinct ones: share them (~120 B a source)
            extra = self._extras.setdefault(tuple(extra.items()), extra)
        reg = Registration(
            name=body.name,
            os_type=body.os_type,
            os_version=body.os_version or "",
            ip=body.ip or "",
            hostname=body.hostname or "",
            agent_version=body.agent_version or "",
            total_bytes=body.total_bytes,
            id=body.id,
            extra=extra,
        )
        return {"id": self.plane.register(project, reg, now)}

    def _poll(self, call: Call, project: str, now: float) -> Any:
        return poll_doc(self.plane.poll(project, call.source_id, now))

    def _command_result(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(CommandResultBody, call.body)
        if body.command_name == "RSET_LOG_ACL":
            self.plane.get_source(project, call.source_id)  # 404 first, as for any other result
            raise CommandMismatch("reported RSET_LOG_ACL, which the reference server never sends")
        # result_detail is free JSON the real service only stores; the reference server drops it.
        self.plane.report_result(project, call.source_id, CommandName(body.command_name), body.result == "success", now)
        return _EMPTY

    def _progress_v1(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(ProgressV1Body, call.body)
        # v1 reports MByte/s; the task shows Mbit/s, as v3 does.
        speed = None if body.migrate_speed is None else body.migrate_speed * 8
        report = Progress(subtask_name=body.subtask_name.value, progress=body.progress, migrate_speed=speed)
        self.plane.report_progress(project, call.task_id, report, now)
        return _EMPTY

    def _progress_v3(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(ProgressV3Body, call.body)
        report = Progress(
            subtask_name=body.subtask_name.value,
            progress=body.progress,
            replicatesize=body.replicatesize,
            totalsize=body.totalsize,
            migrate_speed=body.migrate_speed,
            remain_time=body.remain_time,
            process_trace=body.process_trace,
        )
        self.plane.report_progress(project, call.task_id, report, now)
        return _EMPTY

    # -- operator side ----------------------------------------------------------------------

    def _get_source(self, call: Call, project: str, now: float) -> Any:
        src, task = self.plane.get_source(project, call.source_id, now)
        return views.source_view(src, task)

    def _list_sources(self, call: Call, project: str, now: float) -> Any:
        q = call.query
        limit, offset = count_param(q, "limit"), count_param(q, "offset")
        connected = bool_param(q, "connected")
        name = _str_param(q, "name")
        if "id" in q:  # one source at most: look it up instead of scanning the list
            try:
                src, _ = self.plane.get_source(project, str(q["id"]), now)
                keep = name in (None, src.name) and connected in (None, src.connected)
                found = [src] if keep else []
            except NotFound:
                found = []
            count, page = len(found), found[offset : offset + (limit or PAGE_SIZE)]
        else:
            count, page = self.plane.list_sources(
                project, now, name=name, connected=connected, limit=limit, offset=offset
            )
        tasks = self._tasks_by_id([s.current_task_id for s in page if s.current_task_id])
        return {
            "count": count,
            "source_servers": [views.source_view(s, tasks.get(s.current_task_id or "")) for s in page],
        }

    def _create_task(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(CreateTaskBody, call.body)
        extra = body.model_dump(mode="json", exclude_none=True, exclude={"name", "type", "source_server", "os_type"})
        spec = TaskSpec(
            name=body.name, type=body.type, source_id=body.source_server.id, os_type=body.os_type, extra=extra
        )
        return {"id": self.plane.create_task(project, spec, now)}

    def _get_task(self, call: Call, project: str, now: float) -> Any:
        return self._task_views([self.plane.get_task(project, call.task_id)], now)[0]

    def _list_tasks(self, call: Call, project: str, now: float) -> Any:
        q = call.query
        limit, offset = count_param(q, "limit"), count_param(q, "offset")
        state, name, source_id = _str_param(q, "state"), _str_param(q, "name"), _str_param(q, "source_server_id")
        if state is not None and state not in TASK_STATE_FILTERS:
            raise InvalidRequest(f"state: unknown task state {state!r}")
        if "id" in q:
            try:
                task = self.plane.get_task(project, str(q["id"]))
                keep = state in (None, task.state.value) and name in (None, task.name)
                found = [task] if keep and source_id in (None, task.source_id) else []
            except NotFound:
                found = []
            count, page = len(found), found[offset : offset + (limit or PAGE_SIZE)]
        else:
            count, page = self.plane.list_tasks(
                project, state=state, name=name, source_id=source_id, limit=limit, offset=offset
            )
        return {"count": count, "tasks": self._task_views(page, now)}

    def _action(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(TaskActionBody, call.body)
        if body.operation in UNSIMULATED_OPERATIONS:
            raise InvalidRequest(
                f"operation {body.operation!r} is documented by SMS but not simulated by the "
                f"reference server (simulated: {', '.join(SIMULATED_OPERATIONS)})"
            )
        self.plane.act(project, call.task_id, Action(body.operation), now)
        return _EMPTY

    def _collect_log(self, call: Call, project: str, now: float) -> Any:
        body = validate_body(CollectLogBody, call.body)
        self.plane.act(project, call.task_id, Action.COLLECT_LOG, now, log_bucket=body.log_bucket)
        return _EMPTY

    def _delete_task(self, call: Call, project: str, now: float) -> Any:
        self.plane.act(project, call.task_id, Action.DELETE, now)
        return _EMPTY

    # -- export (the reference server's own; a real SMS has no such endpoint) -----------------

    def _export_task_events(self, call: Call, project: str, now: float) -> Any:
        return self._export(call, project, self.plane.store.events(), views.event_doc)

    def _export_commands(self, call: Call, project: str, now: float) -> Any:
        return self._export(call, project, self.plane.store.commands(), views.command_doc)

    def _export(self, call: Call, project: str, records: list[Any], doc: Callable[[Any], dict[str, Any]]) -> Any:
        """One page of the project's records, oldest first: what a load test's tables are made of."""
        limit = count_param(call.query, "limit") or EXPORT_PAGE_SIZE
        offset = count_param(call.query, "offset")
        if limit > EXPORT_PAGE_SIZE:
            raise InvalidRequest(f"limit: at most {EXPORT_PAGE_SIZE}, got {limit}")
        mine: dict[str, bool] = {}
        with self.plane.store.read() as tx:
            for r in records:
                if r.source_id not in mine:
                    brief = tx.source_brief(r.source_id)
                    mine[r.source_id] = brief is not None and brief[0] == project
        items = [r for r in records if mine[r.source_id]]
        return {"count": len(items), "items": [doc(r) for r in items[offset : offset + limit]]}

    # -- internals --------------------------------------------------------------------------

    def _tasks_by_id(self, ids: list[str]) -> dict[str, Task]:
        with self.plane.store.read() as tx:
            return {t.id: t for i in ids if (t := tx.get_task(i)) is not None}

    def _task_views(self, tasks: list[Task], now: float) -> list[dict[str, Any]]:
        """Task views with their source's name and connection at `now` (one read for the whole page)."""
        plane = self.plane
        with plane.store.read() as tx:
            sources: dict[str, Source | None] = {
                i: plane.as_at(s, now) if (s := tx.get_source(i)) else None for i in {t.source_id for t in tasks}
            }
        return [
            views.task_view(t, s.name if (s := sources[t.source_id]) else "", s.connected if s else None) for t in tasks
        ]


class InMemoryApi:
    """The API core in memory, answering a model's `Call` with an `Outcome`: what the simulated
    server does once a request has waited for a worker, and what unit tests step models through.
    One project (`default` unless given); a fresh in-memory control plane unless given."""

    def __init__(self, control_plane: ControlPlane | None = None, project: str = "default") -> None:
        self.cp = control_plane or ControlPlane(MemoryStore())
        self.core = ApiCore(self.cp)
        self.project = project

    def handle(self, call: Call, now: float, latency_s: float = 0.0) -> Outcome:
        """Apply `call` at time `now`; the outcome carries `latency_s` as its latency."""
        if call.endpoint in POLL_ENDPOINTS:  # the hot path: no handler table, no tuple
            try:
                command = self.cp.poll(self.project, call.source_id, now)
            except SmsError as exc:
                return Outcome(exc.http_status, exc.body(), latency_s)
            return Outcome(200, poll_doc(command), latency_s)
        status, body = self.core.handle(call, self.project, now)
        return Outcome(status, body, latency_s)
