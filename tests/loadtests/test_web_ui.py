"""Locust's web UI, driven through its HTTP endpoints (/swarm, /stop) as a browser would.

A real Locust process (`python -m loadtests`, the web UI on a loopback port) against the real
reference server: each test started from the UI writes its own run directory, finished when
that test stops; a second start works; users and spawn rate the fleet cannot take are refused
with the reason. Waits are bounded; nothing asserts a duration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loadtests.processes import child_env, free_loopback_port
from sim.records import is_finished, load_run
from sim.server.process import run_server, stop_process

SCENARIO = """
name: webui
seed: 5
duration_s: 6
fleet: {agents: 12}
agent: {poll_interval_s: 1, poll_jitter_s: 0.1}
operator:
  tasks: {kind: waves, waves: [{at_s: 1, count: 2}]}
  check_interval_s: 1
"""
TOKEN = "webui-token-51c0"


def _wait(check, what: str, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.fixture
def web_ui(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(web UI base URL, --sms-out) of a Locust process with its web UI, loading a reference server."""
    scenario = tmp_path / "webui.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "ui"
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [TOKEN], tmp_path / "server.log") as server:
        port = free_loopback_port()
        args = ["--scenario", str(scenario), "--host", server.base_url, "--sms-out", str(out)]
        args += ["--web-host", "127.0.0.1", "--web-port", str(port)]
        with open(tmp_path / "locust.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "loadtests", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_env(TOKEN),
                cwd=tmp_path,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _answers(url), "the web UI", 90.0)
            yield url, out
        finally:
            stop_process(proc)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _swarm(url: str, users: object, rate: object) -> dict[str, object]:
    form = {"user_count": str(users), "spawn_rate": str(rate)}
    return httpx.post(url + "/swarm", data=form, timeout=10.0).json()  # type: ignore[no-any-return]


@pytest.mark.slow
def test_start_stop_start_from_the_web_ui_writes_a_run_per_test(web_ui: tuple[str, Path]) -> None:
    url, out = web_ui
    refused = _swarm(url, 12, 0.5)  # 12 agents at 0.5 a second take 24 s: longer than the 6 s run
    assert refused["success"] is False and "longer than the run" in str(refused["message"])
    assert not out.exists()  # nothing started

    first = _swarm(url, 12, 12)  # the form as the UI fills it in: the scenario's own fleet, all at once
    assert first["success"] is True, first
    _wait(lambda: (out / "manifest.json").exists(), "the first run directory")
    time.sleep(2.5)  # some polls happen
    assert httpx.post(url + "/stop", timeout=30.0).json()["success"] is True
    _wait(lambda: is_finished(out), "the first run, finished when its test stopped", 30.0)
    stopped = load_run(out)
    assert stopped.manifest["complete"] is False  # stopped before its 6 s
    assert len(stopped.requests) > 0

    second = _swarm(url, 20, 15)  # users 20: the fleet has 20 agents; ramp-up 15: they arrive over 20/15 s
    assert second["success"] is True, second
    run2 = out.with_name("ui-2")
    _wait(lambda: is_finished(run2), "the second run, to its end", 60.0)
    again = load_run(run2)
    assert again.manifest["complete"] is True and again.manifest["run_id"] != stopped.manifest["run_id"]
    req = again.requests
    registered = req[(req["endpoint"] == "/v3/sources") & (req["method"] == "POST")]
    assert sorted(registered["agent_id"]) == list(range(20))
    assert again.manifest["scenario"]["fleet"]["arrival"]["kind"] == "ramp"
    assert again.summary["tasks"]["created"] == 2  # this test's tasks only, not the first test's


def test_python_m_loadtests_help_lists_the_projects_options() -> None:
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-m", "loadtests", "--help"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    for option in ("--scenario", "--sms-out", "--sms-agents", "--sms-duration-s", "--sms-token"):
        assert option in done.stdout


def test_a_spawn_rate_the_fleet_cannot_take_is_refused_on_the_command_line(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "loadtests", "--scenario", "quickstart", "--headless", "-r", "0.5"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert "-r/--spawn-rate: 200 agents at 0.5 a second take 400 s to arrive, longer than the run" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "runs").exists()
