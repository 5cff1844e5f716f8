"""Liveness over real HTTP: `smsload serve --liveness ...` on SQLite, watched through its own views.

A poll records the agent's visit (`last_visit_time` moves), a silence longer than
`--disconnect-after-s` shows as `connected: false` in the source, the task and the listing
filter, and the next poll brings the source back. Waits are bounded loops; nothing asserts a
duration.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.model.liveness import Liveness, LivenessWrite
from sim.server.process import run_server

TOKEN = "liveness-token"
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
REG = {"name": "live-1", "os_type": "LINUX", "ip": "10.0.0.9", "disks": [{"name": "sda", "size": 1 << 30}]}


Serve = Callable[[Liveness], tuple[httpx.Client, Path]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start `smsload serve` (SQLite) with a liveness policy: a client for it and its log; stopped afterwards."""
    with contextlib.ExitStack() as stack:

        def start(liveness: Liveness) -> tuple[httpx.Client, Path]:
            log = tmp_path / "serve.log"
            running = stack.enter_context(
                run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [TOKEN], log, liveness=liveness)
            )
            client = httpx.Client(base_url=running.base_url, headers={"X-Auth-Token": TOKEN}, timeout=10)
            stack.callback(client.close)
            return client, log

        yield start


def _source(http: httpx.Client, sid: str) -> dict[str, Any]:
    response = http.get(f"/v3/sources/{sid}")
    assert response.status_code == 200, response.text
    return response.json()


def _poll(http: httpx.Client, sid: str) -> None:
    assert http.get(f"/v3/sources/{sid}/command").status_code == 200


def _until(check: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Wait until `check()` holds, or fail naming `what` (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {limit_s} s")
        time.sleep(0.05)


def test_polls_record_visits_and_silence_disconnects(serve: Serve) -> None:
    http, log = serve(Liveness(LivenessWrite.EVERY_POLL, disconnect_after_s=1.0))
    assert "liveness every poll, disconnected after 1 s" in log.read_text()
    sid = http.post("/v3/sources", json=REG).json()["id"]
    task = {"name": "m", "type": "MIGRATE_FILE", "source_server": {"id": sid}}
    task_id = http.post("/v3/tasks", json=task).json()["id"]
    first = _source(http, sid)
    assert first["connected"] is True and first["last_visit_time"] is not None

    def moved() -> bool:
        _poll(http, sid)
        return _source(http, sid)["last_visit_time"] > first["last_visit_time"]

    _until(moved, "a poll moving last_visit_time")
    _until(lambda: _source(http, sid)["connected"] is False, "connected turning false after silence")
    seen = _source(http, sid)["last_visit_time"]
    assert http.get(f"/v3/tasks/{task_id}").json()["connected"] is False
    assert http.get("/v3/sources", params={"connected": "false"}).json()["count"] == 1
    assert http.get("/v3/sources", params={"connected": "true"}).json()["count"] == 0

    def reconnected() -> bool:  # the next poll does it (a loaded machine may need another: 1 s is short)
        _poll(http, sid)
        return _source(http, sid)["connected"] is True

    _until(reconnected, "a poll reconnecting the source")
    assert _source(http, sid)["last_visit_time"] > seen


def test_coalesced_visits_leave_most_polls_read_only(serve: Serve) -> None:
    http, log = serve(Liveness(LivenessWrite.COALESCED, coalesce_s=3600.0, disconnect_after_s=7200.0))
    assert "liveness at most every 3600 s, disconnected after 7200 s" in log.read_text()
    sid = http.post("/v3/sources", json=REG).json()["id"]
    registered = _source(http, sid)["last_visit_time"]
    for _ in range(5):
        _poll(http, sid)
    assert _source(http, sid)["last_visit_time"] == registered  # within the hour: not recorded again
    assert _source(http, sid)["connected"] is True


def test_off_keeps_polls_read_only_and_sources_connected(serve: Serve) -> None:
    http, log = serve(Liveness(LivenessWrite.OFF, disconnect_after_s=0.001))
    assert "liveness off" in log.read_text()
    sid = http.post("/v3/sources", json=REG).json()["id"]
    registered = _source(http, sid)["last_visit_time"]
    time.sleep(0.05)  # longer than the disconnect setting, which `off` ignores
    _poll(http, sid)
    view = _source(http, sid)
    assert view["last_visit_time"] == registered and view["connected"] is True
    assert http.get("/v3/sources", params={"connected": "false"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--liveness", "sometimes"], "--liveness"),
        (["--liveness-coalesce-s", "soon"], "--liveness-coalesce-s"),
        (["--disconnect-after-s", "0"], "--disconnect-after-s"),
        (["--disconnect-after-s", "nan"], "--disconnect-after-s"),
        (["--liveness-coalesce-s", "60", "--disconnect-after-s", "30"], "--liveness-coalesce-s"),
    ],
    ids=["mode", "coalesce", "zero-disconnect", "nan-disconnect", "disconnect-below-coalesce"],
)
def test_bad_liveness_flags_are_one_line_and_exit_code_2(args: list[str], mentions: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "serve", "--db", "memory://", "--port", "0", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smsload serve: error:") and mentions in lines[0], done.stderr
