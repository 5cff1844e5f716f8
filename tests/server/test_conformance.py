"""One list of calls through the API core in memory and through the real server over HTTP.

Every endpoint, valid and invalid, goes through `ApiCore` over an in-memory control plane and
through a real `smsload serve` process (SQLite, and PostgreSQL) over loopback HTTP. Both must
give the same status and the same body once ids and times are normalised: the server adds
only HTTP, so any difference is a rule written twice. The expected status of each call is
written down too, so the list also says what the API does.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.model.api import ApiCore
from sim.model.controlplane import ControlPlane
from sim.model.intents import ENDPOINTS, Call
from sim.model.lifecycle import OsType, Phase, TaskType, subtask_sequence
from sim.model.store import MemoryStore
from sim.server.process import run_server

MIGRATE = subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.MIGRATE)
SYNC = subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.SYNC)
DISK = {"name": "sda", "size": 10 << 30, "used_size": 1 << 30, "partition_style": "GPT"}
REG = {"name": "web-01", "os_type": "LINUX", "ip": "10.0.0.1", "hostname": "web-01", "disks": [DISK]}
RESULT_OK = {"result": "success", "result_detail": {}}


def progress(subtask: str, pct: int) -> dict[str, Any]:
    return {"subtask_name": subtask, "progress": pct, "replicatesize": pct, "totalsize": 100, "process_trace": "x"}


@dataclass(frozen=True)
class Step:
    """One call: `$name` in any string stands for the id an earlier step saved as `name`."""

    expect: int
    endpoint: str
    source: str = ""
    task: str = ""
    body: Any = None
    query: dict[str, Any] = field(default_factory=dict)
    save: str = ""  # keep the answer's `id` under this name


S = Step
CALLS: list[Step] = [
    # -- registration -------------------------------------------------------------------------
    S(200, "register", body={**REG, "cpu_quantity": 4, "firmware": "UEFI", "agent_version": "24.1"}, save="s1"),
    S(200, "register", body={"name": "win-01", "os_type": "WINDOWS", "ipv6": "::1"}, save="s2"),
    S(200, "register", body={**REG, "name": "db-01", "id": "fixed-source-id"}, save="s3"),  # not ours: a new id
    S(200, "register", body={**REG, "name": "db-01-again", "id": "$s3"}),  # re-registration with its id
    S(400, "register", body={"os_type": "LINUX", "ip": "10.0.0.1"}),  # no name
    S(400, "register", body={**REG, "os_type": "BSD"}),
    S(400, "register", body={"name": "x", "os_type": "LINUX"}),  # no address
    S(400, "register", body={**REG, "name": 5}),
    S(400, "register", body={**REG, "disks": [{"name": "sda", "size": -1}]}),
    S(400, "register", body={**REG, "disks": [{"name": "sda", "size": 1.5}]}),
    S(400, "register", body=[REG]),
    S(400, "register", body="LINUX"),
    S(400, "register", body=None),
    # -- agent side, nothing pending ----------------------------------------------------------
    S(200, "poll", source="$s1"),
    S(200, "poll_v3", source="$s1"),
    S(404, "poll", source="no-such-source"),
    S(404, "poll_v3", source="no-such-source"),
    S(400, "command_result", source="$s1", body={"command_name": "START", **RESULT_OK}),
    S(400, "command_result_v3", source="$s1", body={"command_name": "RSET_LOG_ACL", **RESULT_OK}),
    S(404, "command_result", source="no-such-source", body={"command_name": "RSET_LOG_ACL", **RESULT_OK}),
    S(400, "command_result", source="$s1", body={"command_name": "START", "result": "maybe", "result_detail": {}}),
    S(400, "command_result", source="$s1", body={"command_name": "START", "result": "success"}),
    S(400, "command_result", source="$s1", body={"command_name": "REBOOT", **RESULT_OK}),
    S(404, "progress", task="no-such-task", body=progress(MIGRATE[0], 10)),
    # -- tasks ------------------------------------------------------------------------------------
    S(400, "create_task", body={"name": "t", "type": "MIGRATE_FILE"}),
    S(400, "create_task", body={"name": "t", "type": "MIGRATE_SOMETHING", "source_server": {"id": "$s1"}}),
    S(400, "create_task", body={"name": "t", "type": "MIGRATE_FILE", "source_server": "$s1"}),
    S(400, "create_task", body={"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": "$s1"}, "priority": 5}),
    S(400, "create_task", body={"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": "no-such-source"}}),
    S(400, "create_task", body={"name": "w", "type": "MIGRATE_FILE", "source_server": {"id": "$s2"}}),
    S(
        200,
        "create_task",
        body={"name": "t1", "type": "MIGRATE_FILE", "source_server": {"id": "$s1"}, "region_name": "r1", "priority": 2},
        save="t1",
    ),
    S(200, "create_task", body={"name": "t3", "type": "MIGRATE_BLOCK", "source_server": {"id": "$s3"}}, save="t3"),
    S(409, "create_task", body={"name": "again", "type": "MIGRATE_FILE", "source_server": {"id": "$s1"}}),
    S(200, "get_task", task="$t1"),
    S(404, "get_task", task="no-such-task"),
    S(200, "poll", source="$s1"),  # creating a task queues nothing
    # -- listings -----------------------------------------------------------------------------
    S(200, "list_sources"),
    S(200, "list_sources", query={"limit": 1, "offset": 1}),
    S(200, "list_sources", query={"connected": "true"}),
    S(200, "list_sources", query={"connected": "FALSE"}),
    S(400, "list_sources", query={"connected": "maybe"}),
    S(200, "list_sources", query={"name": "win-01"}),
    S(200, "list_sources", query={"id": "$s1"}),
    S(200, "list_sources", query={"id": "$s1", "name": "other"}),
    S(200, "list_sources", query={"id": "no-such-source"}),
    S(400, "list_sources", query={"limit": "ten"}),
    S(400, "list_sources", query={"offset": -1}),
    S(400, "list_sources", query={"limit": 2**31}),
    S(200, "list_tasks"),
    S(200, "list_tasks", query={"state": "READY", "limit": 1}),
    S(200, "list_tasks", query={"state": "SKIPPING"}),
    S(400, "list_tasks", query={"state": "BOGUS"}),
    S(200, "list_tasks", query={"source_server_id": "$s3"}),
    S(200, "list_tasks", query={"name": "t1"}),
    S(200, "list_tasks", query={"id": "$t1", "state": "RUNNING"}),
    S(200, "list_tasks", query={"id": "$t1"}),
    S(200, "list_tasks", query={"id": "no-such-task"}),
    S(400, "list_tasks", query={"offset": "1e3"}),
    S(200, "get_source", source="$s1"),
    S(200, "get_source", source="$s3"),
    S(404, "get_source", source="no-such-source"),
    # -- a migration --------------------------------------------------------------------------
    S(400, "action", task="$t1", body={"operation": "cutover"}),  # documented, not simulated
    S(400, "action", task="$t1", body={"operation": "explode"}),
    S(400, "action", task="$t1", body={"op": "start"}),
    S(404, "action", task="no-such-task", body={"operation": "start"}),
    S(400, "progress", task="$t1", body=progress(MIGRATE[0], 10)),  # not running yet
    S(200, "action", task="$t1", body={"operation": "start"}),
    S(200, "poll", source="$s1"),
    S(200, "poll_v3", source="$s1"),  # re-delivered until acknowledged
    S(400, "command_result", source="$s1", body={"command_name": "STOP", **RESULT_OK}),
    S(200, "command_result_v3", source="$s1", body={"command_name": "START", **RESULT_OK}),
    S(200, "poll", source="$s1"),
    S(200, "progress", task="$t1", body=progress(MIGRATE[0], 60)),
    S(400, "progress", task="$t1", body=progress(MIGRATE[0], 30)),  # going down
    S(200, "progress", task="$t1", body=progress(MIGRATE[2], 10)),  # moving on completes the earlier ones
    S(400, "progress", task="$t1", body=progress("NOT_A_SUBTASK", 10)),
    S(400, "progress", task="$t1", body={**progress(MIGRATE[0], 101)}),
    S(400, "progress", task="$t1", body={"subtask_name": MIGRATE[0], "progress": 70}),  # v3 needs sizes
    S(200, "progress_v1", task="$t1", body={"subtask_name": MIGRATE[2], "progress": 100, "migrate_speed": 2.5}),
    S(400, "progress_v1", task="$t1", body={"subtask_name": MIGRATE[1], "progress": "40"}),
    S(200, "get_task", task="$t1"),
    S(200, "list_tasks", query={"state": "RUNNING"}),
    S(200, "action", task="$t1", body={"operation": "stop"}),
    S(200, "poll", source="$s1"),
    S(200, "command_result", source="$s1", body={"command_name": "STOP", **RESULT_OK}),
    S(200, "get_task", task="$t1"),
    S(200, "action", task="$t1", body={"operation": "start"}),
    S(200, "poll", source="$s1"),
    S(200, "command_result", source="$s1", body={"command_name": "START", **RESULT_OK}),
    S(200, "progress", task="$t1", body=progress(MIGRATE[0], 100)),  # a late repeat: nothing to do
    *[S(200, "progress", task="$t1", body=progress(name, 100)) for name in MIGRATE[3:]],
    S(200, "get_task", task="$t1"),
    S(200, "get_source", source="$s1"),
    S(400, "collect_log", task="$t1", body={"log_bucket": ""}),
    S(200, "collect_log", task="$t1", body={"log_bucket": "logs"}),
    S(200, "poll", source="$s1"),
    S(200, "command_result", source="$s1", body={"command_name": "UPLOAD_LOG", **RESULT_OK}),
    S(200, "action", task="$t1", body={"operation": "sync"}),
    S(200, "poll", source="$s1"),
    S(200, "command_result", source="$s1", body={"command_name": "SYNC", **RESULT_OK}),
    S(200, "progress", task="$t1", body=progress(SYNC[0], 100)),
    S(200, "get_task", task="$t1"),
    S(200, "action", task="$t3", body={"operation": "start"}),
    S(200, "command_result", source="$s3", body={"command_name": "START", "result": "fail", "result_detail": {}}),
    S(200, "get_task", task="$t3"),
    S(200, "action", task="$t3", body={"operation": "restart"}),
    S(200, "poll", source="$s3"),
    S(200, "delete_task", task="$t1"),
    S(200, "poll", source="$s1"),
    S(200, "command_result", source="$s1", body={"command_name": "DELETE", **RESULT_OK}),
    S(404, "get_task", task="$t1"),
    S(404, "delete_task", task="no-such-task"),
    S(200, "list_tasks"),
    S(200, "list_sources"),
    # -- the reference server's export -------------------------------------------------------
    S(200, "export_task_events"),
    S(200, "export_task_events", query={"offset": 3, "limit": 2}),
    S(200, "export_commands"),
    S(200, "export_commands", query={"offset": 100}),
    S(400, "export_commands", query={"limit": 10_001}),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return ids[value[1:]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def run_calls(send: Any) -> list[tuple[int, Any]]:
    """Send every call with `send(call) -> (status, body)`, saving ids as the steps say."""
    ids: dict[str, str] = {}
    answers = []
    for step in CALLS:
        call = Call(
            step.endpoint,
            source_id=_fill(step.source, ids),
            task_id=_fill(step.task, ids),
            body=_fill(step.body, ids),
            query=_fill(step.query, ids),
        )
        status, body = send(call)
        if step.save and status == 200:
            ids[step.save] = body["id"]
        answers.append((status, body))
    return answers


_TIME_KEYS = frozenset(
    {"t", "add_date", "last_visit_time", "create_date", "start_date", "finish_date", "end_date"}
    | {"enqueued_at", "delivered_at", "acked_at"}
)
_LOG_OBJECT = re.compile(r"/\d+\.tar\.gz$")


def normalise(answers: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Ids become `<id:N>` in order of first appearance, times `<t>` (null stays null)."""
    ids: dict[str, str] = {}
    for _, body in answers:
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            ids.setdefault(body["id"], f"<id:{len(ids)}>")

    def norm(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: norm(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        if key in _TIME_KEYS and isinstance(value, int | float) and not isinstance(value, bool):
            return "<t>"
        if isinstance(value, str):
            for real, placeholder in ids.items():
                value = value.replace(real, placeholder)
            return _LOG_OBJECT.sub("/<ms>.tar.gz", value)
        return value

    return [(status, norm(body)) for status, body in answers]


@pytest.fixture(scope="module")
def in_memory() -> list[tuple[int, Any]]:
    core = ApiCore(ControlPlane(MemoryStore()))
    return run_calls(lambda call: core.handle(call, "conformance", time.time()))


def test_every_endpoint_is_called_and_the_memory_core_answers_as_listed(in_memory: list[tuple[int, Any]]) -> None:
    assert {s.endpoint for s in CALLS} == set(ENDPOINTS)
    got = [(s.endpoint, status) for s, (status, _) in zip(CALLS, in_memory)]
    assert got == [(s.endpoint, s.expect) for s in CALLS]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(base URL, token) of a fresh reference server: a new SQLite file or PostgreSQL schema."""
    db = f"sqlite:///{tmp_path / 'sms.sqlite3'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    token = secrets.token_hex(8)
    with run_server(db, [f"{token}=conformance"], tmp_path / "server.log") as server:
        yield server.base_url, token


def test_the_server_over_http_answers_as_the_core_in_memory(
    in_memory: list[tuple[int, Any]], server_url: tuple[str, str]
) -> None:
    base_url, token = server_url
    with httpx.Client(base_url=base_url, headers={"X-Auth-Token": token}, timeout=10) as http:

        def send(call: Call) -> tuple[int, Any]:
            method, template = ENDPOINTS[call.endpoint]
            path = template.format(source_id=call.source_id, task_id=call.task_id)
            kwargs: dict[str, Any] = {"params": call.query}
            if call.body is not None:
                kwargs["json"] = call.body
            response = http.request(method, path, **kwargs)
            return response.status_code, response.json()

        over_http = run_calls(send)
    expected, got = normalise(in_memory), normalise(over_http)
    for step, want, have in zip(CALLS, expected, got):
        assert have == want, f"{step.endpoint} {step.body or step.query}"
    assert len(got) == len(expected)
