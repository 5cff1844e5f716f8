"""`kill -9` of `smsload serve` leaves nothing running: its workers die with it (sim.lifeline).

Before, granian's worker survived its main process, kept serving and held the port, so a
restart failed with "address in use".
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from sim.server.process import serve_command, wait_ready
from tests.server.conftest import processes_gone


@pytest.mark.slow
def test_kill_9_of_serve_takes_its_workers_and_frees_the_port(tmp_path: Path) -> None:
    token = f"tok-{secrets.token_hex(8)}"
    db = f"sqlite:///{tmp_path / 'sms.sqlite3'}"
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(serve_command(db, [token], workers=2), stdout=log, stderr=subprocess.STDOUT)
    try:
        url = wait_ready(proc, log_path, time.monotonic() + 30)
        workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert workers, "expected worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert processes_gone(workers, within_s=10), f"workers still running: {workers}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The same port again: nothing holds it.
    port = url.rsplit(":", 1)[1]
    with open(tmp_path / "again.log", "wb") as log:
        again = subprocess.Popen(serve_command(db, [token], port=int(port)), stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_ready(again, tmp_path / "again.log", time.monotonic() + 30) == url
    finally:
        again.terminate()
        again.wait(timeout=15)
