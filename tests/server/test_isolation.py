"""Isolation: project B acting on project A's sources and tasks learns nothing and changes nothing.

Driven by the route table (`sim.model.intents.ENDPOINTS`): every endpoint has probes here, and
a new endpoint without one fails `test_every_endpoint_has_probes`. A probe sets A's objects up
in a state where B's request would do something if it reached them (a START pending for a
poll, a READY task for `start`, a failed one for `restart`, ...), then B sends each request
twice: once naming A's objects and once naming objects that exist nowhere. The two answers
must be alike (status, error code, message, with the ids swapped: no oracle), A's views of its
source, task, commands (`delivered_at` included: B's poll is no delivery) and task events
must be unchanged, and B's listings and exports must hold none of A's ids. Runs on SQLite and
on PostgreSQL (a fresh schema).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from sim.model.bodies import UNSIMULATED_OPERATIONS
from sim.model.intents import ENDPOINTS
from sim.model.liveness import Liveness, LivenessWrite
from sim.server.process import run_server
from tests.conftest import pg_schema
from tests.server.conftest import Sms

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@contextmanager
def _serve(store: str, tmp: Path, liveness: Liveness | None = None) -> Iterator[tuple[Sms, Sms]]:
    """A server on `store` (a new SQLite file or PostgreSQL schema) and clients of projects A and B."""
    tokens = {p: f"tok-{p}-{secrets.token_hex(8)}" for p in ("a", "b")}
    with ExitStack() as stack:
        db = f"sqlite:///{tmp / 'sms.sqlite3'}" if store == "sqlite" else stack.enter_context(pg_schema())
        server = stack.enter_context(
            run_server(db, [f"{t}={p}" for p, t in tokens.items()], tmp / "server.log", liveness=liveness)
        )
        a, b = Sms(server.base_url, tokens["a"]), Sms(server.base_url, tokens["b"])
        stack.callback(a.http.close)
        stack.callback(b.http.close)
        yield a, b


@pytest.fixture(scope="module", params=STORES)
def projects(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sms, Sms]]:
    """Clients of projects A and B on one server, per store."""
    with _serve(request.param, tmp_path_factory.mktemp(f"isolation-{request.param}")) as clients:
        yield clients


# -- A's objects ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The objects a request names: a source, a task, their names, the task's subtask names."""

    source: str
    task: str = ""
    name: str = ""
    task_name: str = ""
    subtasks: tuple[str, ...] = ()

    def ghost(self) -> Target:
        """The same shape with ids and names that exist nowhere."""
        return replace(
            self,
            source=uuid.uuid4().hex,
            task=uuid.uuid4().hex if self.task else "",
            name=f"ghost-{uuid.uuid4().hex}",
            task_name=f"ghost-{uuid.uuid4().hex}" if self.task else "",
        )


def fresh(a: Sms) -> Target:
    """A registered source without a task."""
    name = f"a-{uuid.uuid4().hex}"
    return Target(a.register(name), name=name)


def ready(a: Sms) -> Target:
    """A source with a READY task."""
    t = fresh(a)
    task_name = f"a-task-{uuid.uuid4().hex}"
    task = a.call("POST", "/v3/tasks", {"name": task_name, "type": "MIGRATE_FILE", "source_server": {"id": t.source}})
    subtasks = tuple(s["name"] for s in a.task(task["id"])["sub_tasks"])
    return replace(t, task=task["id"], task_name=task_name, subtasks=subtasks)


def pending(a: Sms) -> Target:
    """A started task whose START nobody has polled yet."""
    t = ready(a)
    a.action(t.task, "start")
    return t


def delivered(a: Sms) -> Target:
    """A started task whose START was polled and not acknowledged."""
    t = pending(a)
    assert a.poll(t.source)["command_name"] == "START"
    return t


def running(a: Sms) -> Target:
    """A RUNNING task, its START acknowledged."""
    t = delivered(a)
    a.ack(t.source, "START")
    return t


def failed(a: Sms) -> Target:
    """A task whose migration failed (MIGRATE_FAIL): `restart` is legal."""
    t = delivered(a)
    a.ack(t.source, "START", "fail")
    assert a.task(t.task)["state"] == "MIGRATE_FAIL"
    return t


def migrated(a: Sms) -> Target:
    """A migrated task (MIGRATE_SUCCESS): `sync` and `delete` are legal."""
    t = running(a)
    a.progress(t.task, t.subtasks[-1], 100)
    assert a.task(t.task)["state"] == "MIGRATE_SUCCESS"
    return t


# -- B's requests -----------------------------------------------------------------------------

Request = tuple[str, str, Any]  # method, path (with its query), JSON body
MakeRequest = Callable[[Target], Request]


def on(
    endpoint: str, body: Callable[[Target], Any] | Any = None, query: Callable[[Target], str] | str = ""
) -> MakeRequest:
    """A request to `endpoint` naming a target's source and task (body and query may depend on it)."""
    method, template = ENDPOINTS[endpoint]

    def make(t: Target) -> Request:
        q = query(t) if callable(query) else query
        path = template.format(source_id=t.source, task_id=t.task) + (f"?{q}" if q else "")
        return method, path, body(t) if callable(body) else body

    return make


def _result(name: str, result: str = "success") -> dict[str, Any]:
    return {"command_name": name, "result": result, "result_detail": {}}


def _progress_v3(t: Target, index: int, progress: int) -> dict[str, Any]:
    return {
        "subtask_name": t.subtasks[index],
        "progress": progress,
        "replicatesize": 0,
        "totalsize": 1,
        "process_trace": "",
    }


def _results(endpoint: str) -> list[MakeRequest]:
    bodies = [_result("START"), _result("START", "fail"), _result("STOP"), _result("RSET_LOG_ACL")]
    return [on(endpoint, body) for body in bodies]


def _action(operation: str) -> MakeRequest:
    return on("action", {"operation": operation})


REGISTER_B = {"name": "b-src", "os_type": "LINUX", "ip": "10.0.0.9"}

# Endpoint -> [(how A's target is set up, B's requests naming it)].
PROBES: dict[str, list[tuple[Callable[[Sms], Target], list[MakeRequest]]]] = {
    "poll": [(pending, [on("poll")])],
    "poll_v3": [(pending, [on("poll_v3")])],
    "register": [(fresh, [on("register", lambda t: {**REGISTER_B, "id": t.source})])],
    "command_result": [(delivered, _results("command_result"))],
    "command_result_v3": [(delivered, _results("command_result_v3"))],
    "progress": [
        (
            running,
            [on("progress", lambda t: _progress_v3(t, 0, 50)), on("progress", lambda t: _progress_v3(t, -1, 100))],
        )
    ],
    "progress_v1": [
        (running, [on("progress_v1", lambda t: {"subtask_name": t.subtasks[-1], "progress": 100, "migrate_speed": 1})])
    ],
    "get_source": [(running, [on("get_source")])],
    "list_sources": [
        (
            running,
            [
                on("list_sources"),
                on("list_sources", query=lambda t: f"id={t.source}"),
                on("list_sources", query=lambda t: f"id={t.source}&connected=true"),
                on("list_sources", query=lambda t: f"name={t.name}"),
            ],
        )
    ],
    "create_task": [
        (fresh, [on("create_task", lambda t: {"name": "b", "type": "MIGRATE_FILE", "source_server": {"id": t.source}})])
    ],
    "get_task": [(running, [on("get_task")])],
    "list_tasks": [
        (
            running,
            [
                on("list_tasks"),
                on("list_tasks", query=lambda t: f"id={t.task}"),
                on("list_tasks", query=lambda t: f"source_server_id={t.source}"),
                on("list_tasks", query=lambda t: f"name={t.task_name}"),
                on("list_tasks", query=lambda t: f"state=RUNNING&source_server_id={t.source}"),
            ],
        )
    ],
    "action": [
        (ready, [_action("start")]),
        (running, [_action("stop")]),
        (failed, [_action("restart")]),
        (migrated, [_action("sync")]),
        (running, [_action(op) for op in UNSIMULATED_OPERATIONS]),
    ],
    "collect_log": [(running, [on("collect_log", {"log_bucket": "b-bucket"})])],
    "delete_task": [(ready, [on("delete_task")]), (migrated, [on("delete_task")])],
    "export_task_events": [
        (running, [on("export_task_events"), on("export_task_events", query="offset=0&limit=10000")])
    ],
    "export_commands": [(pending, [on("export_commands"), on("export_commands", query="offset=0&limit=10000")])],
}


# -- checks -----------------------------------------------------------------------------------


def _answer(b: Sms, request: Request, t: Target) -> tuple[int, Any]:
    """B's answer with the target's ids and names put as placeholders, and a new id as `<new>`."""
    method, path, body = request
    response = b.http.request(method, path, json=body)
    text = response.text
    for value, placeholder in [(t.source, "<source>"), (t.task, "<task>"), (t.name, "<name>"), (t.task_name, "<tn>")]:
        if value:
            text = text.replace(value, placeholder)
    doc = json.loads(text) if text else None
    if response.status_code == 200 and isinstance(doc, dict) and set(doc) == {"id"} and not doc["id"].startswith("<"):
        doc = {"id": "<new>"}  # a registration or task creation of B's own
    return response.status_code, doc


def a_state(a: Sms, t: Target) -> dict[str, Any]:
    """What A sees of the target: source and task views, and its commands and task events."""
    commands = a.call("GET", "/smsload/export/commands")["items"]
    events = a.call("GET", "/smsload/export/task_events")["items"]
    task = a.http.get(f"/v3/tasks/{t.task}") if t.task else None
    return {
        "source": a.source(t.source),
        "task": None if task is None else (task.status_code, task.json()),
        "commands": [c for c in commands if c["source_id"] == t.source],
        "events": [e for e in events if e["source_id"] == t.source],
    }


def assert_no_trace(b: Sms, t: Target) -> None:
    """None of B's listings and exports names the target's source or task."""
    ids = [i for i in (t.source, t.task) if i]
    for path in [
        "/v3/sources?limit=1000",
        "/v3/tasks?limit=1000",
        "/smsload/export/commands",
        "/smsload/export/task_events",
    ]:
        text = b.http.get(path).text
        assert not [i for i in ids if i in text], f"B's {path} names A's objects"


def probe(a: Sms, b: Sms, setup: Callable[[Sms], Target], requests: list[MakeRequest]) -> None:
    target = setup(a)
    before = a_state(a, target)
    for make in requests:
        ghost = target.ghost()
        theirs, nobody = _answer(b, make(target), target), _answer(b, make(ghost), ghost)
        assert theirs == nobody, f"{make(target)[:2]}: B on A's objects {theirs} vs on none {nobody}"
        # A request the API refuses before looking anything up would probe nothing.
        refused = isinstance(body := make(target)[2], dict) and body.get("operation") in UNSIMULATED_OPERATIONS
        assert refused or (nobody[1] or {}).get("error_code") != "SMS.9801", f"{make(target)[:2]}: {nobody}"
    assert a_state(a, target) == before, f"{setup.__name__}: B's requests changed A's objects"
    assert_no_trace(b, target)


def test_every_endpoint_has_probes() -> None:
    assert set(PROBES) == set(ENDPOINTS)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_another_project_learns_and_changes_nothing(projects: tuple[Sms, Sms], endpoint: str) -> None:
    a, b = projects
    assert endpoint in PROBES, f"no isolation probe for endpoint {endpoint!r}"
    for setup, requests in PROBES[endpoint]:
        probe(a, b, setup, requests)


@pytest.mark.parametrize("store", STORES)
def test_another_projects_request_settles_no_orphaned_stop(store: str, tmp_path: Path) -> None:
    """A STOP nobody acknowledges is completed by the next operator action once the source is
    disconnected (a documented timeout); B's requests on the task are not such an action."""
    liveness = Liveness(LivenessWrite.EVERY_POLL, coalesce_s=0.0, disconnect_after_s=0.5)
    with _serve(store, tmp_path, liveness) as (a, b):
        t = running(a)
        a.action(t.task, "stop")
        time.sleep(1.0)  # A's agent is silent: its source is disconnected now
        before = a_state(a, t)
        assert (before["source"]["connected"], before["task"][1]["state"]) == (False, "ABORTING")
        probe(
            a,
            b,
            lambda _: t,
            [
                _action("start"),
                _action("stop"),
                on("delete_task"),
                on("collect_log", {"log_bucket": "b"}),
                on("create_task", lambda t: {"name": "b", "type": "MIGRATE_FILE", "source_server": {"id": t.source}}),
            ],
        )
        a.action(t.task, "start")  # A's own action settles it (ABORTING -> ABORT) and resumes
        assert a.task(t.task)["state"] == "RUNNING"
