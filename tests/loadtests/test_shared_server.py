"""Two load tests in a row against one server that holds other sources: each run acts only on its own.

The quickstart shortened to 10 s (`smsload load quickstart --duration-s 10`, here through
`run_load`), twice against one reference server; before the second run the server also holds
sources nobody's test owns, besides the first run's leftovers. Both runs must send the same
workload, report it truthfully, and touch no source but their own.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from loadtests.run import LoadOptions, run_load
from sim.cli_support import scenario_from_args
from sim.fleet import agent_spec
from sim.records import load_run
from sim.server.process import run_server

TOKEN = "shared-token-7d1e"


def _requests_by_endpoint(run: Path) -> dict[tuple[str, str], int]:
    req = load_run(run).requests
    ok = req[req["ok"]]
    return {key: int(n) for key, n in ok.groupby(["method", "endpoint"]).size().items()}


@pytest.mark.slow
def test_two_runs_against_one_server_send_the_same_workload_and_touch_no_foreign_source(tmp_path: Path) -> None:
    said: list[str] = []
    scenario = scenario_from_args("quickstart", agents=40, duration_s=10, say=said.append)
    assert said == ["shortened to 10 s: task waves at 15 s (10 tasks) dropped"]
    headers = {"X-Auth-Token": TOKEN}
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [TOKEN], tmp_path / "server.log") as server:
        options = LoadOptions(host=server.base_url, token=TOKEN, quiet=True)
        first = run_load(scenario, tmp_path / "first", options)
        foreign = []
        for i in range(30):  # somebody else's servers, registered (and idle) on the same project
            body = agent_spec(scenario, i, name_prefix="someone-else-").registration()
            answer = httpx.post(f"{server.base_url}/v3/sources", json=body, headers=headers, timeout=10)
            foreign.append(answer.json()["id"])
        second = run_load(scenario, tmp_path / "second", options)
        tasks = httpx.get(f"{server.base_url}/v3/tasks", params={"limit": 1000}, headers=headers, timeout=10).json()
        sources = httpx.get(f"{server.base_url}/v3/sources", params={"limit": 1000}, headers=headers, timeout=10)
    a, b = _requests_by_endpoint(first), _requests_by_endpoint(second)
    created = ("POST", "/v3/tasks")
    assert a[created] == b[created] == 10  # the first wave of the quickstart, on each run's own sources
    assert a[("POST", "/v3/sources")] == b[("POST", "/v3/sources")] == 40
    poll = ("GET", "/v1/sms/sources/{source_id}/command")
    assert abs(a[poll] - b[poll]) <= 0.25 * max(a[poll], b[poll])  # the same polling, within wall-clock noise
    # The second run's tasks run on live agents of its own, so they report progress and command
    # results as the first run's do (how many, in a 5 s window on a busy machine, is timing).
    # Acting on the first run's leftovers, whose agents are gone, it had neither.
    for key in (("PUT", "/v3/tasks/{task_id}/progress"), ("POST", "/v1/sms/sources/{source_id}/command_result")):
        assert a[key] > 0 and b[key] > 0, key
    for run in (first, second):
        loaded = load_run(run)
        assert loaded.summary["tasks"]["created"] == 10  # what this run did, not the server's history
        assert set(loaded.tasks["task_id"]) <= set(loaded.requests["task_id"])
    touched = {t["source_server"]["id"] for t in tasks.get("tasks", [])} | {
        s["id"] for s in sources.json()["source_servers"] if s.get("current_task")
    }
    assert not touched & set(foreign)
    run_ids = {load_run(r).manifest["run_id"] for r in (first, second)}
    names = {s["name"] for s in sources.json()["source_servers"]}
    for run_id in run_ids:  # each run's sources carry its run id
        assert sum(name.startswith(f"{run_id}-agent-") for name in names) == 40
