"""`smsload serve` as a user runs it: real processes, exit codes, output (the demo: tests/test_demo.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sim.server.process import run_server, serve_command, stop_process, wait_ready

PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
SERVER_TIMING_HEADER = "server-timing"


def _smsload(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--db", "bogus://x"], "bogus://x"),
        (["--db", "postgresql://u:secret@127.0.0.1:1/x"], "cannot open the store"),
        (["--port", "70000"], "--port"),
        (["--workers", "0"], "--workers"),
        (["--db", "memory://", "--workers", "2"], "memory://"),
        (["--token", "has space"], "--token"),
        (["--admin-token", "has space"], "--admin-token"),
    ],
    ids=["bad-url", "unreachable-postgres", "bad-port", "bad-workers", "memory-workers", "bad-token", "bad-admin"],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(args, mentions, tmp_path):
    done = _smsload("serve", "--port", "0", *args) if "--port" not in args else _smsload("serve", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smsload serve: error:"), done.stderr
    assert mentions in lines[0]
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def test_serve_stops_cleanly_on_sigint_and_sigterm(tmp_path):
    for sig in (signal.SIGINT, signal.SIGTERM):
        log_path = tmp_path / f"serve-{sig.name}.log"
        with open(log_path, "wb") as log:
            env = {**os.environ, "PYTHONPATH": PACKAGE_ROOT}
            proc = subprocess.Popen(
                serve_command(f"sqlite:///{tmp_path / 'sms.sqlite3'}", ["t"]),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            wait_ready(proc, log_path, time.monotonic() + 30)
            os.kill(proc.pid, sig)
            assert proc.wait(timeout=15) == 0, log_path.read_text()
        finally:
            stop_process(proc)
        assert "Traceback" not in log_path.read_text()


def test_without_tokens_a_generated_one_is_printed_and_works(tmp_path, monkeypatch):
    monkeypatch.delenv("SMS_AUTH_TOKEN", raising=False)
    with run_server("memory://", [], tmp_path / "serve.log") as server:
        line = next(line for line in server.log().splitlines() if "generated token" in line)
        token = line.split("generated token ", 1)[1].split()[0]
        assert httpx.get(f"{server.base_url}/v3/sources", headers={"X-Auth-Token": token}).status_code == 200
        assert httpx.get(f"{server.base_url}/v3/sources", headers={"X-Auth-Token": "x"}).status_code == 401
    assert server.exit_code == 0


def test_the_environment_token_is_used_and_not_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("SMS_AUTH_TOKEN", "env-token-123")
    with run_server("memory://", [], tmp_path / "serve.log") as server:
        response = httpx.get(f"{server.base_url}/v3/sources", headers={"X-Auth-Token": "env-token-123"})
        assert response.json() == {"count": 0, "source_servers": []}
        assert "env-token-123" not in server.log() and "generated token" not in server.log()


def test_without_granian_serve_falls_back_to_uvicorn(tmp_path):
    # A child in which `import granian` fails, as on a machine without it.
    code = (
        "import sys; sys.modules['granian'] = None; from sim.cli import main; "
        "sys.exit(main(['serve', '--db', 'memory://', '--port', '0', '--token', 'tok']))"
    )
    log_path = tmp_path / "uvicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
        )
    try:
        url = wait_ready(proc, log_path, time.monotonic() + 30)
        response = httpx.get(f"{url}/v3/sources", headers={"X-Auth-Token": "tok"})
        assert response.headers["server"] == "uvicorn"
        assert response.json() == {"count": 0, "source_servers": []}
        assert SERVER_TIMING_HEADER in response.headers
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log_path.read_text()
    finally:
        stop_process(proc)
