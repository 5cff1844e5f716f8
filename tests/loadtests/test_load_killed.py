"""`kill -9` of `smsload load` leaves nothing running and no run marked complete.

Before, the reference server it had started kept running, and Locust finished the run on its
own and wrote `complete: true` to a run nobody was waiting for. Now both die with it
(sim.lifeline): the server is stopped gracefully, Locust is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

SCENARIO = """
name: killed
seed: 3
duration_s: 30
fleet: {agents: 10}
agent: {poll_interval_s: 1, poll_jitter_s: 0.1}
"""


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
def test_kill_9_of_load_stops_its_server_and_locust(tmp_path: Path) -> None:
    scenario, out = tmp_path / "killed.yaml", tmp_path / "run"
    scenario.write_text(SCENARIO)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "load", str(scenario), "--out", str(out), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, children = time.monotonic() + 60, []
        while time.monotonic() < deadline:  # until the server and Locust both run
            children = psutil.Process(proc.pid).children(recursive=True)
            cmdlines = [" ".join(c.cmdline()) for c in children if _alive([c.pid])]
            if any(" serve " in c for c in cmdlines) and any("locust" in c for c in cmdlines):
                break
            time.sleep(0.2)
        else:
            pytest.fail("smsload load did not start its server and Locust")
        time.sleep(2)  # the run under way
        pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        # The server stops gracefully, its workers killed after sim.server.cli.STOP_GRACE_S.
        deadline = time.monotonic() + 30
        while _alive(pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(pids) == [], [" ".join(psutil.Process(p).cmdline()) for p in _alive(pids)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    manifest = out / "manifest.json"
    assert not manifest.exists() or json.loads(manifest.read_text()).get("complete") is not True
