"""`run_load` called as a function: the reference server and Locust as child processes, real HTTP on loopback.

What `smsload load` does, without its command line: the token is an argument and must stay
out of this process's environment and out of the run directory; problems a user can fix
are `LoadError`s raised before anything starts; an interrupted run is written, incomplete.
Locust is never imported here (`run_load` only starts it). Waits are bounded; nothing
asserts a duration.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import psutil
import pytest

from loadtests.run import LoadError, LoadOptions, run_load
from sim.records import load_run
from sim.scenario import parse_scenario
from sim.server.process import run_server

SHORT = parse_scenario(
    """
name: direct
seed: 3
duration_s: 8
fleet: {agents: 20}
agent: {poll_interval_s: 1, poll_jitter_s: 0.1}
operator:
  tasks: {kind: waves, waves: [{at_s: 1, count: 2}]}
  check_interval_s: 1
""",
    "short",
)
REGISTER = "/v3/sources"


class Lines:
    """The progress lines `run_load` says, collected (some come from a reader thread)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def having(self, text: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if text in line]


def _no_token_in(path: Path, token: str) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f"the token was written to {f}"


def _nothing_left_of(out: Path) -> None:
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert left == []


def _registered(out: Path) -> list[int]:
    r = load_run(out).requests
    return sorted(r.loc[(r["endpoint"] == REGISTER) & (r["method"] == "POST") & r["ok"], "agent_id"])


@pytest.mark.slow
def test_run_load_against_the_reference_server_it_starts(tmp_path: Path) -> None:
    token = "direct-token-1f3a9c"
    environ = dict(os.environ)
    said = Lines()
    out = run_load(SHORT, tmp_path / "run", LoadOptions(token=token), progress=said)
    assert out == tmp_path / "run"
    assert dict(os.environ) == environ  # the token went to the children only
    run = load_run(out)
    m = run.manifest
    # The embedded server: public_api_only decided off (the extensions, sync among them, are its own).
    assert m["complete"] is True and m["executor"] == "locust"
    assert m["scenario"] == SHORT.resolve_public_api(external=False).to_dict()
    assert m["target"].startswith("http://127.0.0.1:") and m["server_tables"] == "server export"
    assert _registered(out) == list(range(20))
    assert run.tasks["task_id"].nunique() == 2  # the operator's wave, from the server's export API
    assert len(run.requests) == m["locust_requests"] and m["locust_failures"] == 0
    (server_line,) = said.having("reference server on")
    assert said.having(" s of 8 s")  # Locust's progress lines, passed on
    assert not psutil.pid_exists(int(server_line.split("(pid ")[1].split(")")[0]))
    _nothing_left_of(out)
    _no_token_in(out, token)


@pytest.mark.slow
def test_run_load_against_a_host_sends_the_token_it_is_given(tmp_path: Path) -> None:
    token = "host-token-8e21d0"
    environ = dict(os.environ)
    said = Lines()
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [token], tmp_path / "server.log") as server:
        options = LoadOptions(host=server.base_url + "/", token=token, quiet=True)
        out = run_load(SHORT, tmp_path / "run", options, progress=said)
    assert dict(os.environ) == environ
    m = load_run(out).manifest
    assert m["complete"] is True and m["target"] == server.base_url  # the trailing slash dropped
    assert m["server_tables"] == "server export"  # a reference server at --host exports them through its API
    assert _registered(out) == list(range(20))  # every agent got in: the token was accepted
    assert said.having("target " + server.base_url) and not said.having(" s of ")  # quiet: no Locust progress
    assert "token" not in repr(options)
    _no_token_in(out, token)


@pytest.mark.slow
def test_an_interrupted_run_is_written_incomplete_and_stops_everything(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    long = SHORT.with_overrides(duration_s=60)
    interrupted = threading.Event()

    def progress(line: str) -> None:
        # The first progress line of Locust (said from a reader thread while run_load waits for
        # Locust): Ctrl-C, as a user would press it, delivered to the main thread.
        if " s of 60 s" in line and not interrupted.is_set():
            interrupted.set()
            os.kill(os.getpid(), signal.SIGINT)

    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        run_load(long, out, progress=progress)
    assert interrupted.is_set()
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    run = load_run(out)
    assert run.manifest["complete"] is False and run.manifest["ended_at"] is not None
    assert len(run.requests) == run.manifest["locust_requests"] > 0
    _nothing_left_of(out)


def test_problems_a_user_can_fix_are_one_load_error_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    held = tmp_path / "held"
    held.mkdir()
    (held / "manifest.json").write_text("{}")
    cases: list[tuple[Path, LoadOptions, str]] = [
        (tmp_path / "a", LoadOptions(workers=65), "--workers: expected 0..64, got 65"),
        (tmp_path / "b", LoadOptions(host="ftp://example.org", token="t"), "expected http://HOST[:PORT]"),
        (tmp_path / "c", LoadOptions(host="http://127.0.0.1:9"), "--host needs a token"),
        (tmp_path / "d", LoadOptions(host=f"http://127.0.0.1:{port}", token="t"), "cannot reach the server"),
        (held, LoadOptions(), "already holds a run"),
    ]
    for out, options, message in cases:
        with pytest.raises(LoadError) as info:
            run_load(SHORT, out, options)
        assert message in str(info.value) and "\n" not in str(info.value)
        assert out == held or not out.exists()
    assert sorted(p.name for p in held.iterdir()) == ["manifest.json"]
