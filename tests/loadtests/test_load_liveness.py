"""One scenario's `server.liveness` configures both worlds: the load test's embedded server and the simulation.

`smsload load` runs a small fleet against the reference server it starts; the server records
every poll as a visit, as the scenario says, so each source's `last_visit_time` follows its
agent through the run. The simulation of the same scenario charges each of those polls the
`poll_write` service time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim.des.run import run_des
from sim.model.controlplane import ControlPlane
from sim.records import load_run
from sim.scenario import load_scenario

ROOT = Path(__file__).parents[2]
POLL = "/v1/sms/sources/{source_id}/command"
AGENTS = 20
SCENARIO = f"""\
name: liveness-load
duration_s: 12
fleet: {{agents: {AGENTS}, arrival: {{kind: all_at_once}}}}
agent: {{poll_interval_s: 1, poll_jitter_s: 0.1}}
server:
  service_ms: {{default: 1, poll: 0.2, poll_write: 2}}
  liveness: {{write: every_poll, disconnect_after_s: 4}}
"""


@pytest.mark.slow
def test_the_scenario_liveness_reaches_the_embedded_server_and_the_simulation(tmp_path: Path) -> None:
    path = tmp_path / "liveness-load.yaml"
    path.write_text(SCENARIO)
    scenario = load_scenario(path)
    out = tmp_path / "load"
    env = {k: v for k, v in os.environ.items() if k != "SMS_AUTH_TOKEN"} | {"SMS_AUTH_TOKEN": "liveness-load-token"}
    done = subprocess.run(
        [sys.executable, "-m", "sim.cli", "load", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "liveness every poll, disconnected after 4 s" in (out / "server.log").read_text()

    from sim.server.stores.sqlite import SqliteStore  # the test reads the store; the load generator never does

    store = SqliteStore(out / "server.sqlite3")
    try:
        cp = ControlPlane(store, liveness=scenario.server.liveness)
        total, sources = cp.list_sources("default", limit=1000)
        assert total == AGENTS
        # Every agent polled for seconds after registering, and each poll was recorded.
        assert all(s.last_visit_time is not None and s.last_visit_time - s.registered_at > 3.0 for s in sources)
        last = max(s.last_visit_time or 0.0 for s in sources)
        assert cp.list_sources("default", last, connected=True)[0] == AGENTS
        assert cp.list_sources("default", last + 60.0, connected=False)[0] == AGENTS  # the fleet has stopped
    finally:
        store.close()

    r = load_run(run_des(scenario, tmp_path / "des")).requests
    polls = r[r["endpoint"] == POLL]
    assert len(polls) > AGENTS and set(polls["server_ms"]) == {2.0}  # every simulated poll charged as a write
