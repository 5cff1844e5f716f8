"""Start `smsload serve` as a child process and stop it again: for the demo, tests and load runs.

`run_server` starts the server on a free loopback port (`--port 0`), reads the URL from the
line the server prints, waits until `/healthz` answers, and on exit stops the process by
its PID: SIGTERM, a wait, and SIGKILL only if it does not stop in time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from sim.lifeline import lifeline_env
from sim.model.liveness import Liveness

_LISTENING = re.compile(rb"listening on (http://\S+)")
# The directory holding the `sim` package: the child imports the same code as this process.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class ServerStartError(RuntimeError):
    """The server process exited or did not become healthy in time; the message quotes its log."""


@dataclass
class RunningServer:
    base_url: str
    pid: int
    log_path: Path
    exit_code: int | None = None  # set once the server has been stopped

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def serve_command(
    db: str,
    tokens: list[str],
    host: str = "127.0.0.1",
    port: int = 0,
    workers: int = 1,
    liveness: Liveness | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `smsload serve` command line; `extra` holds further options (the knee rig's limits)."""
    cmd = [
        sys.executable,
        "-m",
        "sim.cli",
        "serve",
        "--db",
        db,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    for token in tokens:
        cmd += ["--token", token]
    if liveness is not None:
        cmd += ["--liveness", liveness.write.value, "--liveness-coalesce-s", repr(liveness.coalesce_s)]
        cmd += ["--disconnect-after-s", repr(liveness.disconnect_after_s)]
    return cmd + list(extra)


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = lifeline_env({**os.environ, **(extra or {})})  # the server stops when its starter dies
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    return env


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:]) or "(no output)"


def wait_ready(proc: subprocess.Popen[bytes], log_path: Path, deadline: float) -> str:
    """The server's URL once it answers /healthz."""
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(f"smsload serve exited with code {proc.returncode}:\n{_tail(log_path)}")
        if url is None:
            found = _LISTENING.search(log_path.read_bytes())
            url = found.group(1).decode() if found else None
        if url is not None:
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return url
            except httpx.TransportError:
                pass  # not listening yet
        time.sleep(0.05)
    raise ServerStartError(f"smsload serve did not become healthy in time:\n{_tail(log_path)}")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> int:
    """Stop a child by its PID (SIGTERM, then SIGKILL after `timeout_s`); its exit code."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
    return proc.wait()


@contextmanager
def run_server(
    db: str,
    tokens: list[str],
    log_path: Path,
    *,
    workers: int = 1,
    timeout_s: float = 30.0,
    liveness: Liveness | None = None,
    env: dict[str, str] | None = None,
    extra: Sequence[str] = (),
) -> Iterator[RunningServer]:
    """A running `smsload serve` on a free loopback port, stopped on exit (even on error or Ctrl-C);
    `liveness` as the server's flags give it (its default when None). `env` is added to the child's
    environment only (a token there reaches the server on no command line and not through ours).
    `extra`: further `smsload serve` options (e.g. `--store-latency-ms`, `--cpus`, `--cpu-quota`)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            serve_command(db, tokens, workers=workers, liveness=liveness, extra=extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_child_env(env),
        )
    server = None
    try:
        server = RunningServer(wait_ready(proc, log_path, time.monotonic() + timeout_s), proc.pid, log_path)
        yield server
    finally:
        code = stop_process(proc)
        if server is not None:
            server.exit_code = code
