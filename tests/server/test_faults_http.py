"""The reference server's fault switch: the admin endpoint and each fault kind, over HTTP on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sim.model.faults import NO_FAULT
from sim.server.admin import ADMIN_PATH, ENV_ADMIN_TOKEN, AdminError, set_faults
from sim.server.process import RunningServer, run_server

TOKEN, ADMIN = "faults-token", "admin-secret-7f3a"
POLL = "/v3/sources?limit=1"  # any authenticated request; 200 when no fault


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Two workers: the state set through one must reach both."""
    tmp = tmp_path_factory.mktemp("faults")
    db = f"sqlite:///{tmp / 'sms.sqlite3'}"
    with run_server(db, [TOKEN], tmp / "server.log", workers=2, env={ENV_ADMIN_TOKEN: ADMIN}) as running:
        yield running


def statuses(url: str, n: int = 40) -> list[int]:
    """n requests, each on a new connection (so both workers answer)."""
    out = []
    for _ in range(n):
        with httpx.Client(headers={"X-Auth-Token": TOKEN}) as client:
            out.append(client.get(f"{url}{POLL}").status_code)
    return out


def test_the_admin_endpoint_needs_its_own_token(server: RunningServer) -> None:
    url = server.base_url
    assert httpx.put(f"{url}{ADMIN_PATH}", json=NO_FAULT).status_code == 401
    assert httpx.put(f"{url}{ADMIN_PATH}", json=NO_FAULT, headers={"X-Auth-Token": TOKEN}).status_code == 401
    with pytest.raises(AdminError, match="refused the admin token"):
        set_faults(url, "wrong", NO_FAULT)
    bad = httpx.put(f"{url}{ADMIN_PATH}", json={"error_rate": 2}, headers={"X-Admin-Token": ADMIN})
    assert bad.status_code == 400 and "error_rate" in bad.json()["error_msg"]
    assert ADMIN not in (server.log_path.read_text())


def test_each_fault_kind_and_back_to_none(server: RunningServer) -> None:
    url = server.base_url
    try:
        assert set_faults(url, ADMIN, {"outage": "http_503"})["outage"] == "http_503"
        assert set(statuses(url)) == {503}
        assert httpx.get(f"{url}{POLL}", headers={"X-Auth-Token": TOKEN}).json()["error_code"] == "SMS.0503"
        set_faults(url, ADMIN, {"outage": "refused"})
        response = httpx.get(f"{url}{POLL}", headers={"X-Auth-Token": TOKEN})
        assert response.status_code == 503 and response.headers["connection"] == "close"
        set_faults(url, ADMIN, {"error_rate": 0.5, "error_status": 500})
        mixed = statuses(url, 80)
        assert set(mixed) == {200, 500} and 20 < mixed.count(500) < 60
        set_faults(url, ADMIN, {"latency_ms": {"dist": "constant", "value": 300}})
        started = time.perf_counter()
        assert statuses(url, 3) == [200] * 3
        assert time.perf_counter() - started >= 0.9  # three requests, each held 300 ms at the door
        # The harness's export API is never faulted (the run's tables must come out of an outage).
        set_faults(url, ADMIN, {"outage": "http_503"})
        export = httpx.get(f"{url}/smsload/export/commands", headers={"X-Auth-Token": TOKEN})
        assert export.status_code == 200
    finally:
        set_faults(url, ADMIN, dict(NO_FAULT))
    assert set(statuses(url)) == {200}
    assert set_faults(url, ADMIN, None) == {**NO_FAULT}


def test_without_an_admin_token_there_is_no_fault_switch(tmp_path: Path) -> None:
    with run_server("memory://", [TOKEN], tmp_path / "server.log") as plain:
        with pytest.raises(AdminError, match="no fault admin endpoint"):
            set_faults(plain.base_url, ADMIN, NO_FAULT)


SLOW = {"slow_store": {"added_ms": {"dist": "constant", "value": 400}}}  # writes only (the default)
REGISTER = {"name": "slow", "os_type": "LINUX", "ip": "10.0.0.9", "disks": [{"name": "sda", "size": 1 << 30}]}


def _timed(url: str, method: str, path: str, body: object = None) -> float:
    """Seconds one request takes on a new connection; it must succeed."""
    return _request(url, method, path, body)[0]


def _server_s(url: str, method: str, path: str, body: object = None) -> float:
    """Seconds the server itself spent on one request (its Server-Timing): not slowed means far below
    the fault's 0.4 s whatever else the machine is doing, as a client's clock cannot promise."""
    return _request(url, method, path, body)[1]


def _request(url: str, method: str, path: str, body: object = None) -> tuple[float, float]:
    with httpx.Client(base_url=url, headers={"X-Auth-Token": TOKEN}, timeout=30) as client:
        started = time.perf_counter()
        response = client.request(method, path, json=body)
        elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    timing = response.headers.get("server-timing", "")
    assert "dur=" in timing, timing
    return elapsed, float(timing.split("dur=", 1)[1].split(",")[0].split(";")[0]) / 1000


def _check_slow_store(url: str, *, lock: bool) -> None:
    """A slow store set and cleared through the admin endpoint, seen in how long writes and reads take."""
    try:
        assert set_faults(url, ADMIN, SLOW)["slow_store"] == {**SLOW["slow_store"], "writes_only": True}
        assert set_faults(url, ADMIN, None)["slow_store"]["added_ms"] == {"dist": "constant", "value": 400.0}
        assert _timed(url, "POST", "/v3/sources", REGISTER) >= 0.4  # a write: inside its transaction
        # Unlike an added latency (an asyncio sleep at the door), the sleep holds the worker and
        # the write lock: two writes at once take turns on SQLite.
        if lock:
            with ThreadPoolExecutor(2) as pool:
                started = time.perf_counter()
                list(pool.map(lambda _: _timed(url, "POST", "/v3/sources", REGISTER), range(2)))
                assert time.perf_counter() - started >= 0.8
        set_faults(url, ADMIN, {"slow_store": {**SLOW["slow_store"], "writes_only": False}})
        assert _timed(url, "GET", POLL) >= 0.4  # a read, now that reads are slowed too
        # The harness's export API is never faulted, a slow store included.
        assert _server_s(url, "GET", "/smsload/export/commands") < 0.4
    finally:
        set_faults(url, ADMIN, dict(NO_FAULT))
    assert set_faults(url, ADMIN, None)["slow_store"] is None
    assert _server_s(url, "POST", "/v3/sources", REGISTER) < 0.4


def test_a_slow_store_holds_writes_inside_their_transaction_sqlite(server: RunningServer) -> None:
    _check_slow_store(server.base_url, lock=True)


@pytest.mark.postgres
def test_a_slow_store_holds_writes_inside_their_transaction_postgres(pg_url: str, tmp_path: Path) -> None:
    with run_server(pg_url, [TOKEN], tmp_path / "server.log", workers=2, env={ENV_ADMIN_TOKEN: ADMIN}) as running:
        _check_slow_store(running.base_url, lock=False)
    assert "Traceback" not in running.log_path.read_text()
