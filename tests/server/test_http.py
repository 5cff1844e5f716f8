"""The reference server's HTTP edges: tokens and projects, request validation, error bodies,
Server-Timing, unknown routes and methods. Every rejected request must change nothing."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import pytest

from loadtests.driver import server_ms
from sim.server.process import run_server

SERVER_TIMING = re.compile(r"^app;dur=\d+\.\d{3}(, body;dur=\d+\.\d{3})?$")


def assert_sms_error(response: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error_code", "error_msg"}
    assert body["error_code"] == code, body
    assert mentions in body["error_msg"], body


def snapshot(sms, source_id: str, task_id: str) -> tuple:
    """Everything a rejected request could have changed, read without side effects."""
    return (
        sms.source(source_id),
        sms.task(task_id),
        sms.call("GET", "/v3/sources")["count"],
        sms.call("GET", "/v3/tasks")["count"],
    )


# -- tokens and projects ---------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-Auth-Token": "not-a-token"}], ids=["missing", "unknown"])
def test_requests_without_a_known_token_are_401_sms_9803(reference_server, sms, headers):
    base_url, _ = reference_server
    source_id, task_id = sms.running_task()
    before = snapshot(sms, source_id, task_id)
    for method, path, body in [
        ("GET", f"/v3/sources/{source_id}/command", None),
        ("GET", f"/v1/sms/sources/{source_id}/command", None),
        ("GET", f"/v3/tasks/{task_id}", None),
        ("GET", "/v3/sources", None),
        ("POST", f"/v3/tasks/{task_id}/action", {"operation": "stop"}),
        ("DELETE", f"/v3/tasks/{task_id}", None),
        ("GET", "/openapi.json", None),
        ("GET", "/no/such/route", None),
    ]:
        assert_sms_error(httpx.request(method, base_url + path, json=body, headers=headers), 401, "SMS.9803")
    assert snapshot(sms, source_id, task_id) == before
    assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}


def test_another_projects_token_sees_no_source_or_task(sms, sms_other):
    source_id, task_id = sms.running_task("private")
    sms.action(task_id, "stop")
    before = snapshot(sms, source_id, task_id)
    for version in ("v1", "v3"):
        path = f"/v3/sources/{source_id}/command" if version == "v3" else f"/v1/sms/sources/{source_id}/command"
        assert_sms_error(sms_other.http.get(path), 404, "SMS.9802")
    assert_sms_error(sms_other.http.get(f"/v3/sources/{source_id}"), 404, "SMS.9802")
    assert_sms_error(sms_other.http.get(f"/v3/tasks/{task_id}"), 404, "SMS.9802")
    assert_sms_error(
        sms_other.http.post(
            f"/v3/sources/{source_id}/command_result",
            json={"command_name": "STOP", "result": "success", "result_detail": {}},
        ),
        404,
        "SMS.9802",
    )
    assert_sms_error(sms_other.http.post(f"/v3/tasks/{task_id}/action", json={"operation": "start"}), 404, "SMS.9802")
    assert_sms_error(sms_other.http.delete(f"/v3/tasks/{task_id}"), 404, "SMS.9802")
    listed = sms_other.call("GET", "/v3/sources")
    assert source_id not in [s["id"] for s in listed["source_servers"]]
    assert sms_other.call("GET", "/v3/sources", params={"id": source_id})["count"] == 0
    assert task_id not in [t["id"] for t in sms_other.call("GET", "/v3/tasks")["tasks"]]
    assert snapshot(sms, source_id, task_id) == before
    assert sms.poll(source_id)["command_name"] == "STOP"  # still pending for its own project


def test_tokens_given_on_the_command_line_are_never_printed(server_log, reference_server):
    log = server_log.read_text()
    assert "listening on http://127.0.0.1:" in log
    for token in reference_server[1].values():
        assert token not in log


# -- request validation ----------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json"}


def _cases(source_id: str, task_id: str) -> list[tuple[str, str, bytes, dict[str, str], int, str, str]]:
    """(method, path, body, headers, status, code, the error message mentions)."""
    result = f"/v3/sources/{source_id}/command_result"
    progress = f"/v3/tasks/{task_id}/progress"
    action = f"/v3/tasks/{task_id}/action"
    good_action = json.dumps({"operation": "stop"}).encode()
    return [
        ("POST", "/v3/sources", b'{"name": "x", "os_type": "LINUX",', JSON_HEADERS, 400, "SMS.9801", "not valid JSON"),
        (
            "POST",
            "/v3/sources",
            b'{"name": "x", "os_type": "BSD", "ip": "1.2.3.4"}',
            JSON_HEADERS,
            400,
            "SMS.9801",
            "os_type",
        ),
        ("POST", "/v3/sources", b'{"name": "x", "os_type": "LINUX"}', JSON_HEADERS, 400, "SMS.9801", "ip or ipv6"),
        ("POST", "/v3/sources", b'{"os_type": "LINUX", "ip": "1.2.3.4"}', JSON_HEADERS, 400, "SMS.9801", "name"),
        (
            "POST",
            "/v3/sources",
            b'{"name": "x", "os_type": "LINUX", "ip": "1.2.3.4", "disks": [{"name": "a", "size": "10"}]}',
            JSON_HEADERS,
            400,
            "SMS.9801",
            "disks.0.size",
        ),
        (
            "POST",
            "/v3/tasks",
            json.dumps({"name": "t", "type": "MIGRATE_FILE"}).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "source_server",
        ),
        (
            "POST",
            "/v3/tasks",
            json.dumps({"name": "t", "type": "MIGRATE_DISK", "source_server": {"id": source_id}}).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "type",
        ),
        (
            "PUT",
            progress,
            json.dumps(
                {
                    "subtask_name": "SSL_CONFIG",
                    "progress": "50",
                    "replicatesize": 0,
                    "totalsize": 0,
                    "process_trace": "",
                }
            ).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "progress",
        ),
        (
            "PUT",
            progress,
            json.dumps(
                {"subtask_name": "WARP_DRIVE", "progress": 5, "replicatesize": 0, "totalsize": 0, "process_trace": ""}
            ).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "subtask_name",
        ),
        (
            "PUT",
            progress,
            json.dumps({"subtask_name": "SSL_CONFIG", "progress": 5}).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "replicatesize",
        ),
        (
            "PUT",
            f"/v1/sms/tasks/{task_id}/progress",
            json.dumps({"subtask_name": "SSL_CONFIG"}).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "progress",
        ),
        (
            "POST",
            result,
            json.dumps({"command_name": "STOP", "result": "success"}).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "result_detail",
        ),
        (
            "POST",
            result,
            json.dumps({"command_name": "STOP", "result": "maybe", "result_detail": {}}).encode(),
            JSON_HEADERS,
            400,
            "SMS.9801",
            "result",
        ),
        ("POST", action, json.dumps({"operation": "explode"}).encode(), JSON_HEADERS, 400, "SMS.9801", "operation"),
        ("POST", action, b"[]", JSON_HEADERS, 400, "SMS.9801", "object"),
        ("POST", action, b"", JSON_HEADERS, 400, "SMS.9801", "empty"),
        ("POST", f"/v3/tasks/{task_id}/log", b"{}", JSON_HEADERS, 400, "SMS.9801", "log_bucket"),
        (
            "POST",
            action,
            b'{"operation": "stop", "pad": "' + b"x" * 10_209 + b'"}',
            JSON_HEADERS,
            401,
            "SMS.2004",
            "10240",
        ),
        ("POST", action, good_action, {}, 401, "SMS.2005", "Content-Type"),
        ("POST", action, good_action, {"Content-Type": "text/plain"}, 401, "SMS.2006", "application/json"),
        (
            "POST",
            "/v3/sources",
            b'{"name": "x"}',
            {"Content-Type": "application/x-www-form-urlencoded"},
            401,
            "SMS.2006",
            "application/json",
        ),
    ]


def test_every_rejected_request_gets_its_code_and_changes_nothing(sms):
    source_id, task_id = sms.running_task("validation")
    before = snapshot(sms, source_id, task_id)
    cases = _cases(source_id, task_id)
    assert len(cases[-4][2]) == 10_241  # just over the documented limit
    for method, path, body, headers, status, code, mentions in cases:
        response = sms.http.request(method, path, content=body, headers=headers)
        assert_sms_error(response, status, code, mentions)
        assert SERVER_TIMING.match(response.headers["server-timing"])
    assert snapshot(sms, source_id, task_id) == before
    assert sms.poll(source_id) == {}  # nothing was queued either


def test_extra_fields_are_ignored_and_a_charset_is_fine(sms):
    body = {
        "name": "extra",
        "os_type": "WINDOWS",
        "ipv6": "fe80::1",
        "some_future_field": [1, 2],
        "disks": [{"name": "c", "size": 5, "physical_volumes": []}, {"name": "d", "size": 7}],
    }
    response = sms.http.post(
        "/v3/sources", content=json.dumps(body).encode(), headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200, response.text
    source = sms.source(response.json()["id"])
    assert source["totalsize"] == 12 and source["ipv6"] == "fe80::1" and "some_future_field" not in source


# -- routes, methods, Server-Timing ----------------------------------------------------------


def test_unknown_route_is_404_sms_9802(sms):
    for path in ("/v3/nothing", "/v3/tasks/", "/v3/sources//command", "/"):
        assert_sms_error(sms.http.get(path), 404, "SMS.9802")


def test_wrong_method_is_sms_2003_405_with_allow(sms):
    source_id = sms.register()
    r = sms.http.post(f"/v3/sources/{source_id}/command", json={})
    assert_sms_error(r, 405, "SMS.2003", "GET")
    assert r.headers["allow"] == "GET"
    assert_sms_error(sms.http.put("/v3/tasks", json={}), 405, "SMS.2003")
    assert_sms_error(sms.http.delete(f"/v3/sources/{source_id}"), 405, "SMS.2003")
    assert_sms_error(sms.http.request("TRACE", "/healthz"), 405, "SMS.2003")


def test_server_timing_is_on_success_and_error_responses(reference_server, sms):
    base_url, _ = reference_server
    source_id = sms.register()
    responses = [
        sms.http.get(f"/v3/sources/{source_id}/command"),
        sms.http.get(f"/v3/sources/{source_id}"),
        sms.http.get("/v3/sources/nope/command"),
        sms.http.get("/nope"),
        httpx.get(f"{base_url}/v3/tasks"),
        httpx.get(f"{base_url}/healthz"),
        sms.http.post("/v3/tasks", content=b"{", headers=JSON_HEADERS),
    ]
    assert [r.status_code for r in responses] == [200, 200, 404, 404, 401, 200, 400]
    for response in responses:
        assert SERVER_TIMING.match(response.headers["server-timing"]), response.headers


def test_server_timing_tells_the_wait_for_a_body_apart(reference_server):
    """A body that arrives 0.3 s after its headers: the app awaited it (`body`), and its own time
    (`app - body`, what a load test records) is the handler's alone."""
    base_url, tokens = reference_server
    host, port = base_url.removeprefix("http://").split(":")
    body = json.dumps({"name": "slow", "os_type": "LINUX", "ip": "10.0.0.9"}).encode()
    head = (
        f"POST /v3/sources HTTP/1.1\r\nHost: {host}\r\nX-Auth-Token: {tokens['alpha']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head + body[:5])
        time.sleep(0.3)
        conn.sendall(body[5:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert b" 200 " in status, answer
    timing = re.search(rb"(?im)^server-timing: *app;dur=([\d.]+), body;dur=([\d.]+)\r$", rest)
    assert timing, rest
    app_ms, body_ms = float(timing[1]), float(timing[2])
    assert body_ms >= 250 and app_ms >= body_ms
    assert server_ms(timing[0].split(b":", 1)[1].decode()) == pytest.approx(app_ms - body_ms)


def test_openapi_document_is_served(sms):
    doc = sms.call("GET", "/openapi.json")
    assert doc["openapi"].startswith("3.") and "/v3/sources/{source_id}/command" in doc["paths"]


def test_a_broken_database_is_500_sms_2007_with_no_details_for_the_client(tmp_path):
    """A real failure inside the server: its SQLite files overwritten while it runs."""
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", ["tok"], tmp_path / "serve.log") as server:
        client = httpx.Client(base_url=server.base_url, headers={"X-Auth-Token": "tok"})
        body = {"name": "doomed", "os_type": "LINUX", "ip": "10.0.0.1"}
        source_id = client.post("/v3/sources", json=body).json()["id"]
        for path in tmp_path.glob("sms.sqlite3*"):
            path.write_bytes(b"\xff" * 4096)
        for response in (
            client.get(f"/v3/sources/{source_id}/command"),
            client.get(f"/v3/sources/{source_id}"),
            client.post("/v3/sources", json=body),
        ):
            assert_sms_error(response, 500, "SMS.2007")
            assert response.json()["error_msg"] == "backend exception"
            assert SERVER_TIMING.match(response.headers["server-timing"])
        client.close()
    assert "Traceback" in server.log()  # the details go to the server's log
    assert server.exit_code == 0
