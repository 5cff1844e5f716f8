"""`run_load` as a staging run: agents signing with AK/SK, the server's /metrics scraped beside them.

The target is a reference server that knows the key pair and no token the load test has, so
every agent that gets in (its signed registration accepted) proves the signing. The server's
own counts must match what the agents saw, the operator must keep to the public API (the
target is not the embedded server), and the secret key must be in no file of the run directory.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from loadtests.run import LoadOptions, run_load
from loadtests.scrape import SERVER_COLUMNS
from sim.records import load_run
from sim.report.analysis import analyze_run
from sim.report.html import write_report
from sim.scenario import parse_scenario
from sim.server.process import run_server
from sim.signing import Credentials

SCENARIO = parse_scenario(
    """
name: staging
seed: 5
duration_s: 8
fleet: {agents: 12, disk_gb: {dist: constant, value: 0.02}}
agent: {poll_interval_s: 1, poll_jitter_s: 0.1, subtask_s: {dist: constant, value: 0.1}}
operator:
  tasks: {kind: waves, waves: [{at_s: 1, count: 3}]}
  check_interval_s: 1
  sync_after_s: 0
""",
    "staging",
)


@pytest.mark.slow
def test_signed_agents_and_the_server_metrics_beside_them(tmp_path: Path) -> None:
    creds = Credentials("STAGINGAK01", "sk-" + secrets.token_hex(16), "default")
    environ = dict(os.environ)
    db, log = f"sqlite:///{tmp_path / 'sms.sqlite3'}", tmp_path / "server.log"
    with run_server(db, [secrets.token_hex(8)], log, env={"SMS_AK_SK": f"{creds.ak}:{creds.sk}"}) as server:
        out = run_load(SCENARIO, tmp_path / "run", LoadOptions(host=server.base_url, ak_sk=creds, quiet=True))
    assert dict(os.environ) == environ
    run = load_run(out)
    r = run.requests
    registered = r[(r["endpoint"] == "/v3/sources") & (r["method"] == "POST") & r["ok"]]
    assert sorted(registered["agent_id"]) == list(range(12))  # every signature was accepted
    assert r["ok"].all() and r["task_id"].replace("", None).dropna().nunique() == 3
    # Not the embedded server: documented operations only, so no `sync` action however long tasks live.
    assert run.manifest["scenario"]["public_api_only"] is True
    # The migrations finished early (tiny disks), when the operator would otherwise ask for a sync.
    assert "MIGRATE_SUCCESS" in set(run.tasks["to_state"])
    assert "SYNC" not in set(r["command_name"].dropna()) and "SYNCING" not in set(run.tasks["to_state"])

    server = pq.read_table(out / "server.parquet").to_pandas()
    assert tuple(server.columns) == SERVER_COLUMNS
    assert server["t_s"].is_monotonic_increasing and server["t_s"].nunique() >= 5  # about one scrape a second
    last = server[server["t_s"] == server["t_s"].max()]
    counted = last[last["metric"] == "smsload_server_requests_total"]
    polls = counted.loc[(counted["endpoint"] == "poll") & (counted["status"] == "200"), "value"].sum()
    client_polls = r["endpoint"].eq("/v1/sms/sources/{source_id}/command").sum()
    # The last scrape came after the last request; a poll in flight when Locust stopped its agent
    # (at most one per agent) reached the server but left no row.
    assert client_polls <= polls <= client_polls + 12
    labels = json.loads(counted["labels"].iloc[0])
    assert set(labels) == {"endpoint", "status"}

    # The report shows the server's view beside the client's.
    analysis = analyze_run(out, n_boot=50)
    view = analysis.server_view
    assert view is not None and len(view) >= 4
    assert view["req_per_s"].sum() > 0 and (view["pending"] >= 0).all()
    page = write_report(analysis).read_text()
    assert "The server&#39;s view" in page or "The server's view" in page

    # Not in the run directory (report, locust.log included), nor the server's log or store.
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert creds.sk.encode() not in f.read_bytes(), f"the secret key was written to {f}"


def _closed(port: int) -> int:
    """Closed connections to the server at `port`: TIME_WAIT on whichever side closed first
    (with `Connection: close` that is the server or the client, as the race goes)."""
    return sum(
        1
        for c in psutil.net_connections(kind="tcp")
        if c.status == "TIME_WAIT" and port in (c.laddr.port if c.laddr else 0, c.raddr.port if c.raddr else 0)
    )


@pytest.mark.slow
@pytest.mark.parametrize("connection", ["per_poll", "keep_alive"])
def test_an_agent_opens_a_connection_per_poll_only_when_the_scenario_says_so(tmp_path: Path, connection: str) -> None:
    scenario = parse_scenario(
        f"""
name: conn
duration_s: 6
fleet: {{agents: 5}}
agent: {{poll_interval_s: 0.5, connection: {connection}}}
operator: {{tasks: {{kind: waves, waves: []}}}}
""",
        "conn",
    )
    token = secrets.token_hex(8)
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [token], tmp_path / "server.log") as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        before = _closed(port)
        out = run_load(scenario, tmp_path / "run", LoadOptions(host=server.base_url, token=token, quiet=True))
        closed = _closed(port) - before
    requests = len(load_run(out).requests)
    assert requests >= 40
    if connection == "per_poll":
        assert closed >= 0.75 * requests  # each request's connection was closed after it (Connection: close)
    else:
        assert closed <= 12  # the agents kept theirs, closed at the end; the probe's, the scrapes', the export's
