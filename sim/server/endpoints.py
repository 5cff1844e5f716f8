"""The reference server's endpoints: each turns a request into one control-plane call.

Every rule (what an action does to a task, when a command counts as delivered, which report
is inconsistent) lives in `ControlPlane`; an endpoint only checks the request's shape, calls
the plane with the caller's project and `time.time()`, and renders the answer. Control-plane
calls are synchronous and run on the event loop's thread: the store holds one connection per
worker process, so handing them to a thread pool would add a thread hop per request and buy
no concurrency.

Write endpoints whose success the API documents only as "a success string" or "no response
body" (command_result, progress, action, log, delete) answer 200 with `{}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from sim.model.commands import NO_COMMAND_JSON, CommandName
from sim.model.controlplane import ControlPlane, Progress, Registration, TaskSpec
from sim.model.entities import Source, Task
from sim.model.errors import CommandMismatch, InvalidRequest, NotFound, SmsError
from sim.model.lifecycle import Action, TaskState
from sim.server import schemas
from sim.server.views import source_view, task_view

MAX_BODY_BYTES = 10_240
EMPTY_OBJECT = NO_COMMAND_JSON.encode()

# The ListTasks `state` filter accepts the current task states and the older filter enum.
TASK_STATE_FILTERS = frozenset(
    {s.value for s in TaskState} | {"SKIPPING", "RESETING", "SYNC_F_ROLLBACKING", "SYNC_F_ROLLBACK_SUCCESS"}
)

B = TypeVar("B", bound=BaseModel)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status, media_type="application/json")


def _old_code(code: str, msg: str) -> SmsError:
    """The old API's request-format errors, with the HTTP status its error table gives (401)."""
    return SmsError(msg, code=code, http_status=401)


async def read_body(request: Request, model: type[B]) -> B:
    """The request body as `model`: SMS.2006 wrong Content-Type, SMS.2004 too big, SMS.2005 no
    Content-Type on a body, SMS.9801 malformed or invalid (naming the field)."""
    ctype = request.headers.get("content-type")
    if ctype is not None and ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise _old_code("SMS.2006", f"Content-Type must be application/json, got {ctype!r}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _old_code("SMS.2004", f"request body is over {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():  # a chunked body has no Content-Length: count it
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise _old_code("SMS.2004", f"request body is over {MAX_BODY_BYTES} bytes")
    if ctype is None and raw:
        raise _old_code("SMS.2005", "Content-Type not specified (expected application/json)")
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    return schemas.parse_body(model, bytes(raw))


MAX_COUNT = 2**31 - 1  # limit/offset beyond this cannot be a real page (and would overflow SQLite)


def _count_param(request: Request, name: str) -> int:
    value = request.query_params.get(name, "0")
    if not value.isdigit() or int(value) > MAX_COUNT:
        raise InvalidRequest(f"{name}: must be an integer 0..{MAX_COUNT}, got {value!r}")
    return int(value)


class Api:
    """The endpoints, bound to one control plane (through `plane()`, which opens it on first use)."""

    def __init__(self, plane: Callable[[], ControlPlane], openapi: bytes) -> None:
        self._plane = plane
        self._openapi = openapi

    @property
    def plane(self) -> ControlPlane:
        return self._plane()

    # -- agent side -------------------------------------------------------------------------

    def poll_body(self, project: str, source_id: str) -> bytes:
        """The poll's response body: the head command, or `{}` when nothing is pending."""
        command = self.plane.poll(project, source_id, time.time())
        return EMPTY_OBJECT if command is None else command.to_json().encode()

    async def poll(self, request: Request) -> Response:
        body = self.poll_body(request.scope["sms.project"], request.path_params["source_id"])
        return Response(body, media_type="application/json")

    async def register(self, request: Request) -> Response:
        body = await read_body(request, schemas.RegisterBody)
        extra = {k: v for k in schemas.REGISTER_EXTRA_FIELDS if (v := getattr(body, k)) is not None}
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
        return json_response({"id": self.plane.register(request.scope["sms.project"], reg, time.time())})

    async def command_result(self, request: Request) -> Response:
        body = await read_body(request, schemas.CommandResultBody)
        project, source_id = request.scope["sms.project"], request.path_params["source_id"]
        if body.command_name == "RSET_LOG_ACL":
            self.plane.get_source(project, source_id)  # 404 first, as for any other result
            raise CommandMismatch("reported RSET_LOG_ACL, which the reference server never sends")
        # result_detail is free JSON the real service only stores; the reference server drops it.
        self.plane.report_result(
            project, source_id, CommandName(body.command_name), body.result == "success", time.time()
        )
        return Response(EMPTY_OBJECT, media_type="application/json")

    async def progress_v1(self, request: Request) -> Response:
        body = await read_body(request, schemas.ProgressV1Body)
        # v1 reports MByte/s; the task shows Mbit/s, as v3 does.
        speed = None if body.migrate_speed is None else body.migrate_speed * 8
        report = Progress(subtask_name=body.subtask_name.value, progress=body.progress, migrate_speed=speed)
        self.plane.report_progress(request.scope["sms.project"], request.path_params["task_id"], report, time.time())
        return Response(EMPTY_OBJECT, media_type="application/json")

    async def progress_v3(self, request: Request) -> Response:
        body = await read_body(request, schemas.ProgressV3Body)
        report = Progress(
            subtask_name=body.subtask_name.value,
            progress=body.progress,
            replicatesize=body.replicatesize,
            totalsize=body.totalsize,
            migrate_speed=body.migrate_speed,
            remain_time=body.remain_time,
            process_trace=body.process_trace,
        )
        self.plane.report_progress(request.scope["sms.project"], request.path_params["task_id"], report, time.time())
        return Response(EMPTY_OBJECT, media_type="application/json")

    # -- operator side ----------------------------------------------------------------------

    async def show_source(self, request: Request) -> Response:
        src, task = self.plane.get_source(request.scope["sms.project"], request.path_params["source_id"])
        return json_response(source_view(src, task))

    async def list_sources(self, request: Request) -> Response:
        project, q = request.scope["sms.project"], request.query_params
        limit, offset = _count_param(request, "limit"), _count_param(request, "offset")
        connected: bool | None = None
        if "connected" in q:
            if q["connected"].lower() not in ("true", "false"):
                raise InvalidRequest(f"connected: must be true or false, got {q['connected']!r}")
            connected = q["connected"].lower() == "true"
        if "id" in q:  # one source at most: look it up instead of scanning the list
            try:
                src, _ = self.plane.get_source(project, q["id"])
                found = [src] if q.get("name", src.name) == src.name and connected in (None, src.connected) else []
            except NotFound:
                found = []
            count, page = len(found), found[offset : offset + (limit or 200)]
        else:
            count, page = self.plane.list_sources(
                project, name=q.get("name"), connected=connected, limit=limit, offset=offset
            )
        tasks = self._tasks_by_id([s.current_task_id for s in page if s.current_task_id])
        views = [source_view(s, tasks.get(s.current_task_id or "")) for s in page]
        return json_response({"count": count, "source_servers": views})

    async def create_task(self, request: Request) -> Response:
        body = await read_body(request, schemas.CreateTaskBody)
        extra = body.model_dump(mode="json", exclude_none=True, exclude={"name", "type", "source_server", "os_type"})
        spec = TaskSpec(
            name=body.name, type=body.type, source_id=body.source_server.id, os_type=body.os_type, extra=extra
        )
        return json_response({"id": self.plane.create_task(request.scope["sms.project"], spec, time.time())})

    async def show_task(self, request: Request) -> Response:
        task = self.plane.get_task(request.scope["sms.project"], request.path_params["task_id"])
        return json_response(self._task_views([task])[0])

    async def list_tasks(self, request: Request) -> Response:
        project, q = request.scope["sms.project"], request.query_params
        limit, offset = _count_param(request, "limit"), _count_param(request, "offset")
        state = q.get("state")
        if state is not None and state not in TASK_STATE_FILTERS:
            raise InvalidRequest(f"state: unknown task state {state!r}")
        if "id" in q:
            try:
                task = self.plane.get_task(project, q["id"])
                found = (
                    [task]
                    if (
                        state in (None, task.state.value)
                        and q.get("name", task.name) == task.name
                        and q.get("source_server_id", task.source_id) == task.source_id
                    )
                    else []
                )
            except NotFound:
                found = []
            count, page = len(found), found[offset : offset + (limit or 200)]
        else:
            count, page = self.plane.list_tasks(
                project,
                state=state,
                name=q.get("name"),
                source_id=q.get("source_server_id"),
                limit=limit,
                offset=offset,
            )
        return json_response({"count": count, "tasks": self._task_views(page)})

    async def task_action(self, request: Request) -> Response:
        body = await read_body(request, schemas.TaskActionBody)
        if body.operation in schemas.UNSIMULATED_OPERATIONS:
            raise InvalidRequest(
                f"operation {body.operation!r} is documented by SMS but not simulated by the "
                f"reference server (simulated: {', '.join(schemas.SIMULATED_OPERATIONS)})"
            )
        self.plane.act(
            request.scope["sms.project"], request.path_params["task_id"], Action(body.operation), time.time()
        )
        return Response(EMPTY_OBJECT, media_type="application/json")

    async def collect_log(self, request: Request) -> Response:
        body = await read_body(request, schemas.CollectLogBody)
        self.plane.act(
            request.scope["sms.project"],
            request.path_params["task_id"],
            Action.COLLECT_LOG,
            time.time(),
            log_bucket=body.log_bucket,
        )
        return Response(EMPTY_OBJECT, media_type="application/json")

    async def delete_task(self, request: Request) -> Response:
        self.plane.act(request.scope["sms.project"], request.path_params["task_id"], Action.DELETE, time.time())
        return Response(EMPTY_OBJECT, media_type="application/json")

    # -- service ----------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")

    # -- internals --------------------------------------------------------------------------

    def _tasks_by_id(self, ids: list[str]) -> dict[str, Task]:
        with self.plane.store.read() as tx:
            return {t.id: t for i in ids if (t := tx.get_task(i)) is not None}

    def _task_views(self, tasks: list[Task]) -> list[dict[str, Any]]:
        """Task views with their source's name and connection (one read for the whole page)."""
        with self.plane.store.read() as tx:
            sources: dict[str, Source | None] = {i: tx.get_source(i) for i in {t.source_id for t in tasks}}
        return [task_view(t, s.name if (s := sources[t.source_id]) else "", s.connected if s else None) for t in tasks]
