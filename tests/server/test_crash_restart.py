"""`kill -9` of the server mid-load, then a restart on the same database: no acknowledged write lost.

Writer threads drive `smsload serve` (2 workers) with real HTTP: register a source, create a
task, start it (a START is queued), and per source either leave the START undelivered, poll it
(delivered, not acknowledged), or acknowledge it and report progress. Each keeps a ledger of
the writes the server answered 2xx. While they are at it the server's main process is killed
with SIGKILL; its workers must die with it (sim.lifeline). A new server on the same database
must then show every acknowledged write (each source, each task with at least the state and
progress acknowledged, each acknowledged command result), and a poll of each source must
deliver every command still unacknowledged, the ones queued before the crash among them.

With the stores' defaults: SQLite in WAL with `synchronous=normal` (a commit is in the log
before the answer, which survives the death of the process) and PostgreSQL's
`synchronous_commit=on` (README, "Durability").
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from sim.model.lifecycle import OsType, Phase, TaskType, subtask_sequence
from sim.server.process import run_server
from tests.server.conftest import processes_gone

WRITERS = 6
LOAD_S = 3.0  # writing before the kill
MAX_ROUNDS = 300  # per writer: a bound on the load whatever the machine's speed
SUBTASK = subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.MIGRATE)[0]
REGISTER = {"os_type": "LINUX", "ip": "10.0.0.1", "disks": [{"name": "sda", "size": 1 << 30}]}


@dataclass
class Ledger:
    """One writer's acknowledged (2xx) writes, and what it could not tell."""

    sources: dict[str, str] = field(default_factory=dict)  # source id -> name
    tasks: dict[str, str] = field(default_factory=dict)  # task id -> source id
    started: set[str] = field(default_factory=set)  # tasks whose `start` was answered: a START queued
    acked: set[str] = field(default_factory=set)  # sources whose START result was answered
    unsure: set[str] = field(default_factory=set)  # sources whose START result got no answer
    progress: dict[str, int] = field(default_factory=dict)  # task -> the last progress of SUBTASK answered
    statuses: Counter[int] = field(default_factory=Counter)  # every answer's status; 0: no answer
    cut: int = 0  # requests whose connection broke after it was made (not refused): cut mid-flight


def write(base_url: str, token: str, writer: int, stop: threading.Event, ledger: Ledger) -> None:
    """Register, create, start, then (by round) nothing more, a poll, or an acknowledgement and
    progress reports; until `stop` or MAX_ROUNDS. A request without an answer ends the round."""
    with httpx.Client(base_url=base_url, headers={"X-Auth-Token": token}, timeout=10) as http:

        def send(method: str, path: str, body: Any = None) -> Any:
            try:
                r = http.request(method, path, json=body)
            except httpx.TransportError as exc:
                ledger.statuses[0] += 1
                ledger.cut += not isinstance(exc, httpx.ConnectError)
                raise
            ledger.statuses[r.status_code] += 1
            return r.json() if r.status_code == 200 else None

        for n in range(MAX_ROUNDS):
            if stop.is_set():
                return
            try:
                name = f"crash-{writer}-{n}"
                if (reg := send("POST", "/v3/sources", {**REGISTER, "name": name})) is None:
                    continue
                source = reg["id"]
                ledger.sources[source] = name
                body = {"name": name, "type": "MIGRATE_FILE", "source_server": {"id": source}}
                if (task := send("POST", "/v3/tasks", body)) is None:
                    continue
                ledger.tasks[task["id"]] = source
                if send("POST", f"/v3/tasks/{task['id']}/action", {"operation": "start"}) is None:
                    continue
                ledger.started.add(task["id"])
                if n % 3 == 0:
                    continue  # the START stays undelivered
                send("GET", f"/v3/sources/{source}/command")
                if n % 3 == 1:
                    continue  # delivered, never acknowledged
                ledger.unsure.add(source)  # until the answer comes
                result = {"command_name": "START", "result": "success", "result_detail": {}}
                if send("POST", f"/v3/sources/{source}/command_result", result) is not None:
                    ledger.acked.add(source)
                ledger.unsure.discard(source)
                for progress in (10, 40, 70):
                    report = {
                        "subtask_name": SUBTASK,
                        "progress": progress,
                        "replicatesize": 0,
                        "totalsize": 1,
                        "process_trace": "",
                    }
                    if send("PUT", f"/v3/tasks/{task['id']}/progress", report) is not None:
                        ledger.progress[task["id"]] = progress
            except httpx.TransportError:
                time.sleep(0.05)  # the server is gone (or going): try again until told to stop


def _merged(ledgers: list[Ledger]) -> Ledger:
    total = Ledger()
    for one in ledgers:
        total.sources |= one.sources
        total.tasks |= one.tasks
        total.started |= one.started
        total.acked |= one.acked
        total.unsure |= one.unsure
        total.progress |= one.progress
        total.statuses += one.statuses
        total.cut += one.cut
    return total


def _commands(http: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = http.get("/smsload/export/commands", params={"offset": len(items)}).json()
        items += page["items"]
        if not page["items"] or len(items) >= page["count"]:
            return items


def check_after_restart(http: httpx.Client, ledger: Ledger) -> None:
    """Every acknowledged write is there, and every unacknowledged command is delivered by a poll."""
    for source, name in ledger.sources.items():
        r = http.get(f"/v3/sources/{source}")
        assert r.status_code == 200 and r.json()["name"] == name, f"registered source {source} lost: {r.text}"
    for task_id, source in ledger.tasks.items():
        r = http.get(f"/v3/tasks/{task_id}")
        assert r.status_code == 200 and r.json()["source_server"]["id"] == source, f"task {task_id} lost: {r.text}"
        task = r.json()
        if task_id in ledger.started:
            assert task["state"] != "READY", f"task {task_id}: its start was acknowledged, yet it is READY"
        progress = {s["name"]: s["progress"] for s in task["sub_tasks"]}[SUBTASK]
        assert progress >= ledger.progress.get(task_id, 0), f"task {task_id}: acknowledged progress lost"
    by_source: dict[str, list[dict[str, Any]]] = {}
    for c in _commands(http):  # oldest first
        by_source.setdefault(c["source_id"], []).append(c)
    for task_id in ledger.started:
        source = ledger.tasks[task_id]
        start = [c for c in by_source.get(source, []) if c["command_name"] == "START" and c["task_id"] == task_id]
        assert len(start) == 1, f"the START of acknowledged start of {task_id}: {start}"
        if source in ledger.acked:
            assert (start[0]["acked_at"] is not None, start[0]["result"]) == (True, "success"), start[0]
        elif source not in ledger.unsure:
            assert start[0]["acked_at"] is None, f"a START nobody acknowledged is acknowledged: {start[0]}"
    delivered = set()
    for source in ledger.sources.keys() | by_source.keys():
        waiting = [c for c in by_source.get(source, []) if c["acked_at"] is None]
        polled = http.get(f"/v3/sources/{source}/command").json()
        if waiting:
            assert polled == {"command_name": waiting[0]["command_name"], "command_param": waiting[0]["param"]}
            delivered.add(source)
        else:
            assert polled == {}, f"source {source}: nothing pending, yet the poll gave {polled}"
    started_unacked = {ledger.tasks[t] for t in ledger.started} - ledger.acked - ledger.unsure
    assert started_unacked and started_unacked <= delivered


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_kill_9_mid_load_loses_no_acknowledged_write(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = f"sqlite:///{tmp_path / 'sms.sqlite3'}" if store == "sqlite" else request.getfixturevalue("pg_url")
    token = f"tok-{secrets.token_hex(8)}"
    stop = threading.Event()
    ledgers = [Ledger() for _ in range(WRITERS)]
    # A millisecond per store transaction makes the server the bottleneck, so that at the kill the
    # writers' requests are at the server, not between two of them: once, without it, all six
    # were between requests and none was cut (every failure a refused connection).
    slower = ("--store-latency-ms", "constant:1")
    with run_server(db, [token], tmp_path / "server.log", workers=2, extra=slower) as server:
        workers = [c.pid for c in psutil.Process(server.pid).children(recursive=True)]
        assert workers, "expected the server's worker processes"
        threads = [
            threading.Thread(target=write, args=(server.base_url, token, i, stop, ledgers[i]), daemon=True)
            for i in range(WRITERS)
        ]
        try:
            for t in threads:
                t.start()
            time.sleep(LOAD_S)
            assert all(t.is_alive() for t in threads), "the writers finished before the kill"
            os.kill(server.pid, signal.SIGKILL)  # mid-flight
            assert processes_gone(workers, within_s=10), f"workers still running after kill -9: {workers}"
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert server.exit_code == -signal.SIGKILL
    ledger = _merged(ledgers)
    assert not [s for s in ledger.statuses if s >= 500], f"5xx before the kill: {ledger.statuses}"
    assert len(ledger.sources) >= WRITERS and ledger.acked and ledger.progress, f"too little load: {ledger.statuses}"
    assert ledger.cut, "no request was cut by the kill"

    with (
        run_server(db, [token], tmp_path / "again.log", workers=2) as again,
        httpx.Client(base_url=again.base_url, headers={"X-Auth-Token": token}, timeout=10) as http,
    ):
        check_after_restart(http, ledger)
