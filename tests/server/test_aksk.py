"""AK/SK: requests signed by the official Huawei Cloud SDK's own signer, against the reference server.

The client here is `huaweicloudsdkcore`'s `Signer` (the test extra), not our `sim.signing`:
the server must accept what the real SDK sends, and refuse a changed request (SMS.0202) or a
stale date (SMS.0205). Our signer is then checked to produce the SDK's signature byte for byte.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

from sim.server.process import RunningServer, run_server
from sim.signing import DATE_FORMAT, Credentials, parse_ak_sk, sign

AK = "SMSLOADTESTAK0000001"
SK = "sk-" + secrets.token_hex(16)
TOKEN = "tok-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The server with one key pair for project `alpha` (from the environment) and a token for it."""
    tmp = tmp_path_factory.mktemp("aksk")
    env = {"SMS_AK_SK": f"{AK}:{SK}=alpha"}
    with run_server(f"sqlite:///{tmp / 'sms.sqlite3'}", [f"{TOKEN}=alpha"], tmp / "server.log", env=env) as server:
        yield server


def sdk_request(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
    sk: str = SK,
    ak: str = AK,
    date: str | None = None,
) -> SdkRequest:
    """A request signed by the SDK's signer, as its HTTP client would send it."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if date is not None:
        headers["X-Sdk-Date"] = date
    request = SdkRequest(
        method=method,
        schema="http",
        host=urlsplit(base_url).netloc,
        resource_path=path,
        query_params=query or [],
        header_params=headers,
        body=json.dumps(body) if body is not None else "",
    )
    return Signer(BasicCredentials(ak, sk)).sign(request)


def send(base_url: str, request: SdkRequest, body: bytes | None = None) -> httpx.Response:
    content = request.body if body is None else body
    return httpx.request(request.method, base_url + request.uri, headers=request.header_params, content=content or None)


def call(base_url: str, method: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    return send(base_url, sdk_request(base_url, method, path, body, **kwargs))


REGISTRATION = {"name": "signed", "os_type": "LINUX", "ip": "10.0.0.1", "disks": [{"name": "sda", "size": 1 << 30}]}


def test_requests_signed_by_the_official_sdk_are_served_for_the_keys_project(signed_server: RunningServer) -> None:
    url = signed_server.base_url
    registered = call(url, "POST", "/v3/sources", REGISTRATION)
    assert registered.status_code == 200, registered.text
    source_id = registered.json()["id"]
    # The source belongs to the key's project: the project's token sees it.
    seen = httpx.get(f"{url}/v3/sources/{source_id}", headers={"X-Auth-Token": TOKEN})
    assert seen.status_code == 200 and seen.json()["name"] == "signed"
    # The poll (the server's fast path), a query string, an operator action, the agent's ack.
    assert call(url, "GET", f"/v1/sms/sources/{source_id}/command").json() == {}
    listed = call(url, "GET", "/v3/sources", query=[("name", "signed"), ("limit", 5), ("offset", 0)])
    assert listed.status_code == 200 and source_id in [s["id"] for s in listed.json()["source_servers"]]
    task = call(url, "POST", "/v3/tasks", {"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": source_id}})
    task_id = task.json()["id"]
    assert call(url, "POST", f"/v3/tasks/{task_id}/action", {"operation": "start"}).status_code == 200
    command = call(url, "GET", f"/v3/sources/{source_id}/command").json()
    assert command == {"command_name": "START", "command_param": {"task_id": task_id}}
    ack = {"command_name": "START", "result": "success", "result_detail": {}}
    assert call(url, "POST", f"/v3/sources/{source_id}/command_result", ack).status_code == 200


@pytest.mark.parametrize(
    ("case", "code"),
    [("changed_body", "SMS.0202"), ("wrong_sk", "SMS.0202"), ("unknown_ak", "SMS.0202"), ("stale_date", "SMS.0205")],
)
def test_a_bad_signature_or_a_wrong_clock_is_refused(signed_server: RunningServer, case: str, code: str) -> None:
    url = signed_server.base_url
    kwargs: dict[str, Any] = {
        "wrong_sk": {"sk": SK + "x"},
        "unknown_ak": {"ak": "NOSUCHAK"},
        "stale_date": {"date": (datetime.now(UTC) - timedelta(minutes=20)).strftime(DATE_FORMAT)},
    }.get(case, {})
    request = sdk_request(url, "POST", "/v3/sources", REGISTRATION, **kwargs)
    body = json.dumps({**REGISTRATION, "name": "forged"}).encode() if case == "changed_body" else None
    response = send(url, request, body)
    assert response.status_code == 401
    assert response.json()["error_code"] == code
    # The poll's fast path checks the same way.
    poll = sdk_request(url, "GET", "/v3/sources/abc/command", **kwargs)
    if case == "changed_body":
        poll.header_params["X-Sdk-Date"] = (datetime.now(UTC) - timedelta(seconds=5)).strftime(DATE_FORMAT)
    assert send(url, poll).json()["error_code"] == code


def test_the_secret_key_is_in_no_log(signed_server: RunningServer) -> None:
    call(signed_server.base_url, "GET", "/v3/sources")
    log = signed_server.log()
    assert AK in log and SK not in log


def test_our_signer_signs_as_the_sdk_does() -> None:
    """`sim.signing.sign` (the load test's agents) gives the SDK's Authorization for the same request."""
    date = "20261129T120000Z"
    body = {"name": "x", "disks": []}
    ours = sign(
        Credentials(AK, SK),
        "POST",
        "127.0.0.1:8080",
        "/v3/sources",
        "limit=5&name=a%20b",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
        now=datetime.strptime(date, DATE_FORMAT),
    )
    sdk = sdk_request("http://127.0.0.1:8080", "POST", "/v3/sources", body, [("name", "a b"), ("limit", 5)], date=date)
    assert ours["Authorization"] == sdk.header_params["Authorization"]
    assert repr(Credentials(AK, SK)).count(SK) == 0


def test_ak_sk_specs() -> None:
    assert parse_ak_sk("A:S=proj") == Credentials("A", "S", "proj")
    assert parse_ak_sk("A:S==") == Credentials("A", "S==", "default")  # base64 padding, no project
    with pytest.raises(ValueError, match="--ak-sk: expected AK:SK") as info:
        parse_ak_sk("only-a-key")
    assert "only-a-key" not in str(info.value)


def test_serve_refuses_a_bad_key_in_one_line_without_quoting_it(tmp_path: Path) -> None:
    secret = "s3cret with spaces"
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "serve", "--db", "memory://", "--port", "0", "--ak-sk", f"AK:{secret}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--ak-sk" in done.stderr and secret not in done.stderr
