"""Regression tests for the defects a hostile tester found (issue 10), on the real server.

Each test sends what broke the server over loopback HTTP to a real `smsload serve` (SQLite,
and PostgreSQL where the defect was PostgreSQL's) and checks the answer is a 4xx in SMS
terms, and that the server's state and log stay sound afterwards.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sim.server.process import run_server
from tests.conftest import pg_schema
from tests.server.conftest import Sms

PROGRESS = {"subtask_name": "CREATE_CLOUD_SERVER", "progress": 10, "replicatesize": 0, "totalsize": 1}


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sms, Sms]]:
    """A 4-worker server on PostgreSQL (a fresh schema) and clients of its two projects."""
    tmp = tmp_path_factory.mktemp("pg_server")
    tokens = {p: f"tok-{p}-{secrets.token_hex(8)}" for p in ("alpha", "beta")}
    with (
        pg_schema() as url,
        run_server(url, [f"{t}={p}" for p, t in tokens.items()], tmp / "server.log", workers=4) as server,
    ):
        a, b = Sms(server.base_url, tokens["alpha"]), Sms(server.base_url, tokens["beta"])
        yield a, b
        a.http.close()
        b.http.close()


@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "%EF%BC%91"])  # '²', Arabic-Indic 3, fullwidth 1
def test_non_ascii_digits_in_paging_are_400(sms: Sms, param: str, value: str) -> None:
    r = sms.http.get(f"/v3/sources?{param}={value}")
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "SMS.9801"
    assert param in r.json()["error_msg"]


def test_a_huge_speed_is_refused_and_listings_stay_valid_json(sms: Sms) -> None:
    _, task_id = sms.running_task("speed")
    for path, body in [
        (
            f"/v1/sms/tasks/{task_id}/progress",
            {"subtask_name": "CREATE_CLOUD_SERVER", "progress": 1, "migrate_speed": 1.7e308},
        ),
        (f"/v3/tasks/{task_id}/progress", {**PROGRESS, "process_trace": "", "migrate_speed": 1e300}),
    ]:
        r = sms.http.put(path, json=body)
        assert r.status_code == 400, r.text
        assert "migrate_speed" in r.json()["error_msg"]
    text = sms.http.get("/v3/tasks").text
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in a listing"))


def test_an_integral_float_is_an_integer_and_a_fraction_is_not(sms: Sms) -> None:
    _, task_id = sms.running_task("integral")
    sms.call("PUT", f"/v3/tasks/{task_id}/progress", {**PROGRESS, "progress": 93.0, "process_trace": ""})
    assert sms.task(task_id)["sub_tasks"][0]["progress"] == 93
    r = sms.http.put(f"/v3/tasks/{task_id}/progress", json={**PROGRESS, "progress": 93.5, "process_trace": ""})
    assert r.status_code == 400 and "progress" in r.json()["error_msg"]


def test_another_projects_id_is_no_oracle(sms: Sms, sms_other: Sms) -> None:
    """B registering an id A owns is answered exactly as B registering an id nobody has."""
    theirs = sms.register("a-owned")
    body = {"name": "b", "os_type": "LINUX", "ip": "10.0.0.9"}
    taken = sms_other.http.post("/v3/sources", json={**body, "id": theirs})
    free = sms_other.http.post("/v3/sources", json={**body, "id": secrets.token_hex(16)})
    assert (taken.status_code, free.status_code) == (200, 200)
    assert taken.json()["id"] not in (theirs,) and free.json()["id"] != theirs
    assert sms.source(theirs)["name"] == "a-owned"  # A's source untouched
    mine = taken.json()["id"]
    assert sms_other.call("POST", "/v3/sources", {**body, "name": "again", "id": mine})["id"] == mine


@pytest.mark.parametrize("bad_id", ["a/b", "x" * 37])
def test_ids_with_a_slash_or_over_36_characters_are_refused(sms: Sms, bad_id: str) -> None:
    r = sms.http.post("/v3/sources", json={"name": "n", "os_type": "LINUX", "ip": "10.0.0.1", "id": bad_id})
    if len(bad_id) > 36:
        assert r.status_code == 400 and "id" in r.json()["error_msg"]
    else:  # not one of the project's sources: a new id of the server's own, which can be polled
        assert r.status_code == 200 and "/" not in r.json()["id"]
        assert sms.poll(r.json()["id"]) == {}


def test_head_of_the_poll_is_not_a_delivery(sms: Sms) -> None:
    source_id = sms.register("head")
    sms.action(sms.create_task(source_id), "start")
    r = sms.http.head(f"/v3/sources/{source_id}/command")
    assert r.status_code >= 400
    commands = sms.call("GET", "/smsload/export/commands")["items"]
    assert [c["delivered_at"] for c in commands if c["source_id"] == source_id] == [None]
    assert sms.poll(source_id)["command_name"] == "START"


@pytest.mark.parametrize(
    "path", ["/v3/sources/a%00b/command", "/v3/sources/a%00b", "/v3/sources?name=a%00b", "/v3/tasks?name=%00"]
)
def test_nul_in_a_path_or_query_is_a_4xx(sms: Sms, path: str) -> None:
    r = sms.http.get(path)
    assert 400 <= r.status_code < 500, r.text


def test_a_client_gone_mid_body_leaves_no_traceback(
    sms: Sms, reference_server: tuple[str, dict[str, str]], server_log: Path
) -> None:
    host, port = httpx.URL(reference_server[0]).host, httpx.URL(reference_server[0]).port
    token = reference_server[1]["alpha"]
    for _ in range(3):
        with socket.create_connection((host, port)) as s:
            s.sendall(
                b"POST /v3/sources HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"X-Auth-Token: {token}\r\nContent-Length: 500\r\n\r\n".encode()
                + b'{"name": "half'
            )
    assert sms.call("GET", "/healthz") == {"status": "ok"}  # the server answers on
    assert "Traceback" not in server_log.read_text()


def test_serve_port_with_a_non_ascii_digit_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sim.cli", "serve", "--port", "²", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--port" in r.stderr


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_nul_bytes_and_huge_speeds_are_4xx(pg_server: tuple[Sms, Sms]) -> None:
    a, _ = pg_server
    source_id, task_id = a.running_task("pg-nul")
    bad = [
        ("POST", "/v3/sources", {"name": "a\x00b", "os_type": "LINUX", "ip": "10.0.0.1"}),
        ("POST", "/v3/tasks", {"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": "x\x00"}}),
        (
            "POST",
            "/v3/tasks",
            {"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": source_id}, "target_server": {"k\x00": 1}},
        ),
        ("PUT", f"/v3/tasks/{task_id}/progress", {**PROGRESS, "process_trace": "\x00"}),
        ("PUT", f"/v3/tasks/{task_id}/progress", {**PROGRESS, "process_trace": "", "migrate_speed": 1.7e308}),
        ("GET", "/v3/sources?name=%00", None),
        ("GET", "/v3/tasks/a%00b", None),
        ("GET", "/v1/sms/sources/a%00b/command", None),
    ]
    for method, path, body in bad:
        r = a.http.request(method, path, json=body)
        assert 400 <= r.status_code < 500, f"{method} {path} -> {r.status_code} {r.text}"
    assert a.call("GET", "/v3/tasks")["count"] >= 1


@pytest.mark.postgres
def test_postgres_concurrent_registrations_of_one_id_never_500(pg_server: tuple[Sms, Sms]) -> None:
    a, b = pg_server
    own = a.register("contended")
    body = {"name": "contended", "os_type": "LINUX", "ip": "10.0.0.1"}

    def register(i: int) -> int:
        client = a if i % 2 else b
        return client.http.post("/v3/sources", json={**body, "id": own if i % 3 else secrets.token_hex(8)}).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(register, range(300)))
    assert set(statuses) == {200}
