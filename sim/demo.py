"""`smsload demo`: start the reference server and drive one migration through its API.

The demo plays both sides over real HTTP: the operator (register sources, create and start a
task) and one agent (poll, acknowledge, report progress), and shows what each side sees. The
server runs as a child process (`smsload serve`) on a free loopback port with a temporary
SQLite database and a generated token, and is stopped on the way out, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.json import JSON
from rich.panel import Panel
from rich.table import Table

from sim.model.lifecycle import OsType, Phase, TaskType, subtask_sequence
from sim.server.process import ServerStartError, run_server

SOURCES = [("web-01", "LINUX", "10.0.0.11", 40), ("db-01", "LINUX", "10.0.0.12", 120),
           ("win-01", "WINDOWS", "10.0.0.13", 80)]  # name, os_type, ip, disk GiB


class DemoError(Exception):
    """The server answered something the demo did not expect."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="start the reference server and drive one migration through it",
                              description=__doc__.splitlines()[0] if __doc__ else None)
    p.set_defaults(func=run_demo)


def _call(client: httpx.Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = client.request(method, path, json=body)
    if response.status_code != 200:
        raise DemoError(f"{method} {path} -> {response.status_code} {response.text}")
    return response.json()


def _task_table(task: dict[str, Any]) -> Table:
    table = Table(title=f"task {task['name']}: {task['state']}  (subtask_info {task['subtask_info']!r})")
    for column in ("subtask", "progress", "started", "ended"):
        table.add_column(column)
    for sub in task["sub_tasks"]:
        table.add_row(sub["name"], f"{sub['progress']}%", "yes" if sub["start_date"] else "",
                      "yes" if sub["end_date"] else "")
    return table


def drive(client: httpx.Client, console: Console) -> dict[str, Any]:
    """The demo's story over the API; returns the final task view."""
    ids = {}
    for name, os_type, ip, gib in SOURCES:
        body = {"name": name, "os_type": os_type, "ip": ip, "agent_version": "demo",
                "disks": [{"name": "disk0", "size": gib << 30}]}
        ids[name] = _call(client, "POST", "/v3/sources", body)["id"]
    listed = _call(client, "GET", "/v3/sources")
    table = Table(title=f"{listed['count']} source servers registered")
    for column in ("name", "id", "os_type", "connected"):
        table.add_column(column)
    for src in listed["source_servers"]:
        table.add_row(src["name"], src["id"], src["os_type"], str(src["connected"]))
    console.print(table)

    source = ids["web-01"]
    task_id = _call(client, "POST", "/v3/tasks", {"name": "migrate-web-01", "type": "MIGRATE_FILE",
                                                  "source_server": {"id": source}})["id"]
    _call(client, "POST", f"/v3/tasks/{task_id}/action", {"operation": "start"})
    console.print(f"operator: created task [bold]{task_id}[/] for web-01 and started it")

    command = _call(client, "GET", f"/v1/sms/sources/{source}/command")
    console.print(Panel(JSON(json.dumps(command)), title=f"agent web-01 polls GET /v1/sms/sources/{source}/command"))
    console.print(_task_table(_call(client, "GET", f"/v3/tasks/{task_id}")))

    _call(client, "POST", f"/v3/sources/{source}/command_result",
          {"command_name": command["command_name"], "result": "success", "result_detail": {}})
    again = _call(client, "GET", f"/v3/sources/{source}/command")
    console.print(f"agent: acknowledged {command['command_name']}; the next poll returns {json.dumps(again)}")

    for subtask in subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.MIGRATE):
        for progress in (50, 100):
            _call(client, "PUT", f"/v3/tasks/{task_id}/progress",
                  {"subtask_name": subtask, "progress": progress, "replicatesize": 0,
                   "totalsize": 40 << 30, "process_trace": f"{subtask} {progress}%"})
    task = _call(client, "GET", f"/v3/tasks/{task_id}")
    console.print("agent: reported progress through every subtask")
    console.print(_task_table(task))
    return task


def run_demo(args: argparse.Namespace) -> int:
    console = Console()
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="smsload-demo-") as tmp:
        db = f"sqlite:///{Path(tmp) / 'demo.sqlite3'}"
        try:
            with run_server(db, [token], Path(tmp) / "server.log") as server:
                console.print(f"reference server at [bold]{server.base_url}[/] (pid {server.pid}, db {db})")
                with httpx.Client(base_url=server.base_url, headers={"X-Auth-Token": token}, timeout=10) as client:
                    task = drive(client, console)
        except ServerStartError as exc:
            console.print(f"[red]smsload demo: {exc}[/]")
            return 1
        except (DemoError, httpx.HTTPError) as exc:
            console.print(f"[red]smsload demo: {exc}[/]")
            return 1
        console.print(f"task state {task['state']}; server stopped (exit code {server.exit_code})")
    return 0
