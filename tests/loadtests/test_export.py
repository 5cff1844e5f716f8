"""A load test's task and command tables through the server's export API, and without it.

Against the real reference server on loopback (`smsload serve`, SQLite): the export is read
page by page, only the caller's project, and turned into the run's tables. Against a real
HTTP server that has no export (404, as a staging SMS would answer) and one that is not
there at all, the tables are rebuilt from the request rows and the manifest says why.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from loadtests.export import FROM_EXPORT, ExportUnavailable, exported_tables, read_export, server_tables
from sim.des.run import run_des
from sim.records import load_run
from sim.records.observed import NOTE, observed_tables
from sim.scenario import load_scenario
from sim.server.process import run_server

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"
TOKENS = {"alpha": "export-alpha-5d2e", "beta": "export-beta-91c0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    """(base URL, t0) of a reference server where project alpha has 3 started tasks and beta 1."""
    tmp = tmp_path_factory.mktemp("export")
    tokens = [f"{token}={project}" for project, token in TOKENS.items()]
    with run_server(f"sqlite:///{tmp / 'sms.sqlite3'}", tokens, tmp / "server.log") as running:
        t0 = time.time()
        for project, tasks in (("alpha", 3), ("beta", 1)):
            with httpx.Client(base_url=running.base_url, headers={"X-Auth-Token": TOKENS[project]}) as sms:
                for i in range(tasks):
                    body = {"name": f"{project}-{i}", "os_type": "LINUX", "ip": "10.0.0.1"}
                    source = sms.post("/v3/sources", json=body).json()["id"]
                    task = sms.post(
                        "/v3/tasks", json={"name": f"t{i}", "type": "MIGRATE_FILE", "source_server": {"id": source}}
                    ).json()["id"]
                    assert sms.post(f"/v3/tasks/{task}/action", json={"operation": "start"}).status_code == 200
                    assert sms.get(f"/v3/sources/{source}/command").json()["command_name"] == "START"
        yield running.base_url, t0


def test_the_export_is_read_page_by_page_and_only_the_callers_project(server: tuple[str, float]) -> None:
    url, _ = server
    whole = read_export(url, TOKENS["alpha"], "export_task_events")
    assert [e["trigger"] for e in whole] == ["create", "start"] * 3
    assert read_export(url, TOKENS["alpha"], "export_task_events", page=4) == whole  # 4 + 2
    assert read_export(url, TOKENS["alpha"], "export_task_events", page=1) == whole
    assert len(read_export(url, TOKENS["beta"], "export_commands", page=1)) == 1


def test_the_export_becomes_the_runs_tables(server: tuple[str, float]) -> None:
    url, t0 = server
    tasks, commands = (t.to_pandas() for t in exported_tables("run-1", url, TOKENS["alpha"], t0))
    assert len(tasks) == 6 and set(tasks["to_state"]) == {"READY", "RUNNING"} and (tasks["run_id"] == "run-1").all()
    assert tasks["t_s"].between(0, 60).all()  # seconds since t0, not epoch seconds
    assert list(commands["command_name"]) == ["START"] * 3 and commands["delivered_s"].notna().all()
    assert commands["acked_s"].isna().all() and set(commands["task_id"]) == set(tasks["task_id"])


def test_a_refused_token_is_not_an_export(server: tuple[str, float]) -> None:
    with pytest.raises(ExportUnavailable, match="HTTP 401"):
        read_export(server[0], "not-a-token", "export_commands")


class _NoExport(http.server.BaseHTTPRequestHandler):
    """A server that is not the reference server: 404 for its export, as a staging SMS answers here;
    every task it is asked about is RUNNING (its public view, `GET /v3/tasks/{id}`)."""

    def do_GET(self) -> None:  # the stdlib's name for it
        if self.path.startswith("/v3/tasks/"):
            task_id = self.path.rsplit("/", 1)[1]
            body, status = json.dumps({"id": task_id, "state": "RUNNING"}).encode(), 200
        else:
            body, status = b'{"error_code": "SMS.0404", "error_msg": "not found"}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def requests(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Real request rows (a simulation's: the same schema and annotations as a load test's)."""
    scenario = load_scenario(QUICKSTART).with_overrides(agents=30, duration_s=30)
    return load_run(run_des(scenario, tmp_path_factory.mktemp("rows") / "run")).requests


def test_without_an_export_the_tables_are_rebuilt_from_the_requests(requests: pd.DataFrame) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoExport)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        tasks, commands, source = server_tables("run-2", url, "tok", 0.0, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert source.startswith(NOTE) and "HTTP 404" in source
    expected_tasks, expected_commands = observed_tables("run-2", requests)
    assert commands.equals(expected_commands) and expected_tasks.num_rows > 0
    # The observed rows, then one row per task whose last observed state the API's view contradicts.
    assert tasks.slice(0, expected_tasks.num_rows).equals(expected_tasks)
    observed = expected_tasks.to_pandas().sort_values("t_s", kind="stable").groupby("task_id")["to_state"].last()
    ends = tasks.slice(expected_tasks.num_rows).to_pandas()
    assert set(ends["task_id"]) == set(observed[observed != "RUNNING"].index)
    assert set(ends["to_state"]) == {"RUNNING"} and set(ends["trigger"]) == {"final_view"}
    assert f"final states read from /v3/tasks/{{task_id}} for {len(observed)} of {len(observed)} tasks" in source


def test_an_unreachable_server_falls_back_too(requests: pd.DataFrame) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tasks, _, source = server_tables("run-3", f"http://127.0.0.1:{port}", "tok", 0.0, requests)
    assert source.startswith(NOTE) and "cannot read" in source and tasks.num_rows > 0
    assert server_tables("run-3", None, "tok", 0.0, requests)[2].endswith("no server address to ask")


def test_the_export_is_named_as_the_source(server: tuple[str, float], requests: pd.DataFrame) -> None:
    assert server_tables("run-4", server[0], TOKENS["alpha"], server[1], requests)[2] == FROM_EXPORT
