"""Locust as child processes of `smsload load`: one standalone process, or a master and workers.

Each Locust process runs in a session (and process group) of its own: Ctrl-C on the terminal
reaches `smsload load` only, which then stops Locust in order (SIGTERM to the master, which
tells its workers to quit and writes the run directory) and, as a last resort, kills each
group by its id, so nothing is left behind. Their output goes to `locust.log` in the run
directory; lines carrying the load test's progress mark are echoed to the terminal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sim.lifeline import lifeline_env

# Imports nothing of Locust: importing locust monkey-patches the process for gevent, and
# `smsload load` itself is a plain process that waits for children and handles signals.
PROGRESS_MARK = "smsload load:"  # log lines carrying this mark are echoed to the terminal
LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the child imports this very checkout


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(token: str) -> dict[str, str]:
    """The environment of Locust's processes: the token travels here, never on a command line."""
    env = lifeline_env(dict(os.environ))  # Locust dies with `smsload load`, even by kill -9
    env["SMS_AUTH_TOKEN"] = token
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines reach us as they are logged
    return env


def locust_args(*, scenario: Path, host: str, out: Path, agents: int | None, duration_s: float | None) -> list[str]:
    """The options of a standalone or master process (workers get the scenario from the master)."""
    args = [
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--only-summary",
        "--host",
        host,
        "--scenario",
        str(scenario.resolve()),
        "--sms-out",
        str(out.resolve()),
    ]
    if agents is not None:
        args += ["--sms-agents", str(agents)]
    if duration_s is not None:
        args += ["--sms-duration-s", repr(duration_s)]
    return args


class LocustProcesses:
    """A running Locust: `processes[0]` is the standalone process or the master."""

    def __init__(self, log_path: Path, echo: Callable[[str], None] | None) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self._pumps: list[threading.Thread] = []
        self._log = open(log_path, "ab")
        self._lock = threading.Lock()
        self._echo = echo

    def start(self, base_args: list[str], env: dict[str, str], workers: int) -> LocustProcesses:
        if workers == 0:
            self._spawn("", base_args, env)
            return self
        port = free_loopback_port()
        self._spawn(
            "",
            [
                *base_args,
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(port),
                "--expect-workers",
                str(workers),
                "--expect-workers-max-wait",
                "60",
            ],
            env,
        )
        for i in range(workers):
            self._spawn(
                f"[worker {i}] ",
                [
                    "-f",
                    str(LOCUSTFILE),
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                    "--only-summary",
                ],
                env,
            )
        return self

    def _spawn(self, prefix: str, args: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        assert proc.stdout is not None
        pump = threading.Thread(target=self._pump, args=(prefix, proc.stdout), daemon=True)
        pump.start()
        self.processes.append(proc)
        self._pumps.append(pump)

    def _pump(self, prefix: str, stream: IO[bytes]) -> None:
        for raw in stream:
            with self._lock:
                self._log.write(prefix.encode() + raw)
                self._log.flush()
            line = raw.decode(errors="replace").rstrip()
            if self._echo is not None and not prefix and PROGRESS_MARK in line:
                self._echo(line[line.index(PROGRESS_MARK) :])

    @property
    def main(self) -> subprocess.Popen[bytes]:
        return self.processes[0]

    def wait(self, timeout_s: float) -> int | None:
        """The standalone process's or master's exit code, or None if it is still running."""
        try:
            return self.main.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def interrupt(self) -> None:
        """Ask Locust to stop as Ctrl-C would: the master stops its workers and writes the run."""
        _signal_group(self.main, signal.SIGINT)

    def stop(self, grace_s: float = 15.0) -> None:
        """Make sure every Locust process is gone: wait, then SIGTERM, then SIGKILL, group by group."""
        deadline = time.monotonic() + grace_s
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            for proc in self.processes:
                if sig is not None:
                    _signal_group(proc, sig)
            for proc in self.processes:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in self.processes):
                break
            deadline = time.monotonic() + 5.0
        for pump in self._pumps:
            pump.join(timeout=5.0)
        self._log.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group this child leads (its id is the child's PID)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
