"""Fixtures for the reference server's HTTP tests: a real `smsload serve` process on loopback.

`reference_server` starts the server (granian, a temporary SQLite database, two tokens for two
projects) once per test module and stops it by its PID afterwards. `sms` and `sms_other` are
small API clients for the two projects; every test registers its own sources, so tests in
one module do not see each other's state.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from sim.server.process import RunningServer, run_server

PROJECTS = ("alpha", "beta")


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    """The running server process and {project: token}."""
    tmp = tmp_path_factory.mktemp("reference_server")
    tokens = {project: f"tok-{project}-{secrets.token_hex(8)}" for project in PROJECTS}
    with run_server(
        f"sqlite:///{tmp / 'sms.sqlite3'}", [f"{t}={p}" for p, t in tokens.items()], tmp / "server.log"
    ) as server:
        yield server, tokens


@pytest.fixture(scope="module")
def reference_server(server_process: tuple[RunningServer, dict[str, str]]) -> tuple[str, dict[str, str]]:
    """(base_url, {project: token}) of a running reference server."""
    return server_process[0].base_url, server_process[1]


@pytest.fixture(scope="module")
def server_log(server_process: tuple[RunningServer, dict[str, str]]) -> Path:
    """Where the reference server's output goes."""
    return server_process[0].log_path


def processes_gone(pids: list[int], within_s: float) -> bool:
    """Whether the processes `pids` are all gone (or zombies) within `within_s` seconds."""

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


class Sms:
    """A thin client of the reference server for one project, with the steps tests repeat."""

    def __init__(self, base_url: str, token: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"X-Auth-Token": token}, timeout=10)

    def call(self, method: str, path: str, body: Any = None, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, json=body, **kwargs)
        assert response.status_code == expect, f"{method} {path} -> {response.status_code} {response.text}"
        return response.json()

    def register(self, name: str = "src", os_type: str = "LINUX", gib: int = 10) -> str:
        body = {"name": name, "os_type": os_type, "ip": "10.1.2.3", "disks": [{"name": "sda", "size": gib << 30}]}
        return self.call("POST", "/v3/sources", body)["id"]

    def create_task(self, source_id: str, type_: str = "MIGRATE_FILE", name: str = "task") -> str:
        return self.call("POST", "/v3/tasks", {"name": name, "type": type_, "source_server": {"id": source_id}})["id"]

    def action(self, task_id: str, operation: str, expect: int = 200) -> Any:
        return self.call("POST", f"/v3/tasks/{task_id}/action", {"operation": operation}, expect=expect)

    def poll(self, source_id: str, version: str = "v3") -> dict[str, Any]:
        path = f"/v3/sources/{source_id}/command" if version == "v3" else f"/v1/sms/sources/{source_id}/command"
        return self.call("GET", path)

    def ack(self, source_id: str, command_name: str, result: str = "success", expect: int = 200) -> Any:
        body = {"command_name": command_name, "result": result, "result_detail": {}}
        return self.call("POST", f"/v3/sources/{source_id}/command_result", body, expect=expect)

    def progress(self, task_id: str, subtask: str, progress: int, expect: int = 200) -> Any:
        body = {"subtask_name": subtask, "progress": progress, "replicatesize": 0, "totalsize": 1, "process_trace": ""}
        return self.call("PUT", f"/v3/tasks/{task_id}/progress", body, expect=expect)

    def task(self, task_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v3/tasks/{task_id}")

    def source(self, source_id: str) -> dict[str, Any]:
        return self.call("GET", f"/v3/sources/{source_id}")

    def running_task(self, name: str = "src") -> tuple[str, str]:
        """A registered source with a started, acknowledged task: (source_id, task_id)."""
        source_id = self.register(name)
        task_id = self.create_task(source_id)
        self.action(task_id, "start")
        assert self.poll(source_id)["command_name"] == "START"
        self.ack(source_id, "START")
        return source_id, task_id


@pytest.fixture
def sms(reference_server: tuple[str, dict[str, str]]) -> Iterator[Sms]:
    """A client for project alpha."""
    client = Sms(reference_server[0], reference_server[1]["alpha"])
    yield client
    client.http.close()


@pytest.fixture
def sms_other(reference_server: tuple[str, dict[str, str]]) -> Iterator[Sms]:
    """A client for project beta."""
    client = Sms(reference_server[0], reference_server[1]["beta"])
    yield client
    client.http.close()
