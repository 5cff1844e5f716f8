"""The load test end to end: `smsload load` and `locust -f` against the real reference server.

Everything runs as the user would run it, in child processes (importing Locust here would
patch this test process for gevent), with real HTTP on loopback only. Waits are bounded;
nothing asserts a duration.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from sim.des.run import run_des
from sim.model.oracles import illegal_transitions
from sim.records import REQUEST_SCHEMA, Run, load_run
from sim.records.observed import observed_tables
from sim.scenarios import find_scenario
from sim.server.process import run_server

ROOT = Path(__file__).parents[2]
QUICKSTART = "quickstart"  # by name: the shipped scenario (a path is tested with the malformed files)
REGISTER, POLL = "/v3/sources", "/v1/sms/sources/{source_id}/command"
TOKEN = "load-test-token-5b1f0c9e"


def _env(token: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SMS_AUTH_TOKEN"}
    if token:
        env["SMS_AUTH_TOKEN"] = token
    return env


def smsload(*args: str, token: str | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", "load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(token),
        cwd=ROOT,
    )


def _no_token_in(path: Path, token: str) -> None:
    for f in path.rglob("*"):
        if f.is_file():
            assert token.encode() not in f.read_bytes(), f"the token was written to {f}"


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The quickstart fleet (200 agents, 5 s polls, tasks at 5 s and 15 s) for 40 s, embedded server."""
    out = tmp_path_factory.mktemp("load") / "quickstart"
    done = smsload(QUICKSTART, "--out", str(out), "--duration-s", "40", token=TOKEN)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout and "Traceback" not in done.stderr
    return load_run(out)


@pytest.mark.slow
def test_run_directory_has_the_simulation_schema(quickstart: Run, tmp_path: Path) -> None:
    m = quickstart.manifest
    assert m["complete"] is True and m["executor"] == "locust" and m["scenario"]["name"] == "quickstart"
    assert m["server_tables"] == "server export" and m["target"].startswith("http://127.0.0.1:")
    assert (m["clock"], m["agents"], m["planned_duration_s"]) == ("wall", 200, 40) and m["t0_epoch"] > 0
    assert 40 <= m["duration_s"] < 60 and m["wall_s"] == pytest.approx(m["duration_s"], abs=0.001)
    sim = load_run(run_des(find_scenario(QUICKSTART).with_overrides(agents=5, duration_s=20), tmp_path / "des"))
    for table in ("requests", "tasks", "commands"):
        assert list(getattr(quickstart, table).columns) == list(getattr(sim, table).columns), table
        # The same kinds of column ("category" for both, though each run has its own categories).
        assert [str(d) for d in getattr(quickstart, table).dtypes] == [str(d) for d in getattr(sim, table).dtypes], (
            table
        )
    assert quickstart.summary is not None and set(quickstart.summary) == set(sim.summary or {})
    requests = quickstart.requests
    assert list(requests.columns) == REQUEST_SCHEMA.names
    assert len(requests) == m["requests"] == m["locust_requests"] > 2000
    assert set(requests["executor"]) == {"locust"} and requests["queue_wait_ms"].isna().all()
    assert m["locust_failures"] == (~requests["ok"]).sum()  # a Locust failure is exactly a row not ok
    assert requests.loc[requests["status"] > 0, "server_ms"].notna().all()  # every answer had Server-Timing
    assert (requests["t_start_s"] >= requests["t_sched_s"]).all()
    generator = pq.read_table(quickstart.path / "generator.parquet").to_pandas()
    assert set(generator["process"]) == {"local"} and len(generator) >= 30 and (generator["rss_mb"] > 0).all()
    assert (generator["loop_lag_ms"] >= 0).all() and generator["host_cpu_percent"].between(0, 100).all()
    _no_token_in(quickstart.path, TOKEN)


@pytest.mark.slow
def test_every_agent_registered_and_polled(quickstart: Run) -> None:
    r = quickstart.requests
    registered = r[(r["endpoint"] == REGISTER) & (r["method"] == "POST") & (r["status"] == 200)]
    assert sorted(registered["agent_id"]) == list(range(200))  # each id once: agent i as in the simulation
    polled = set(r.loc[r["endpoint"] == POLL, "agent_id"])
    assert polled == set(range(200))
    commands = r.loc[(r["endpoint"] == POLL) & r["command_name"].notna(), "command_name"]
    assert {"START", "SYNC", "DELETE"} <= set(commands)


@pytest.mark.slow
def test_tasks_live_their_whole_life_over_http_by_the_rules(quickstart: Run) -> None:
    tasks = quickstart.tasks
    assert tasks["task_id"].nunique() == 20
    whole_lives = 0
    for task_id, rows in tasks.groupby("task_id", sort=False):
        assert illegal_transitions(rows.itertuples()) == [], task_id
        changes = [s for s, prev in zip(rows["to_state"], rows["from_state"]) if s != prev]
        life = iter(changes)  # START -> MIGRATE_SUCCESS -> SYNC -> SYNC_SUCCESS -> DELETE, in that order
        whole_lives += all(s in life for s in ("RUNNING", "MIGRATE_SUCCESS", "SYNCING", "SYNC_SUCCESS", "DELETED"))
    assert whole_lives >= 1
    assert quickstart.manifest["agent_violation_count"] == 0
    assert quickstart.summary is not None and quickstart.summary["tasks"]["deleted"] >= 1


@pytest.mark.slow
def test_the_tables_rebuilt_from_the_requests_agree_with_the_servers(quickstart: Run) -> None:
    # What a load test against a server without the export writes, against what this server exported.
    tasks, commands = (t.to_pandas() for t in observed_tables(quickstart.manifest["run_id"], quickstart.requests))
    # Every delivered command is seen; one queued in the last seconds may not be (nothing shows what it was).
    # A delivery whose answer never reached its agent (a poll that timed out on a loaded machine) is
    # the server's word alone: such a command may be missing, never invented.
    keys = ["task_id", "command_name", "enqueued_s"]
    seen = commands[commands["delivered_s"].notna()].sort_values(keys, ignore_index=True)
    true = quickstart.commands[quickstart.commands["delivered_s"].notna()].sort_values(keys, ignore_index=True)
    for frame in (seen, true):
        frame["nth"] = frame.groupby(["task_id", "command_name"], observed=True).cumcount()
    pairs = ["task_id", "command_name", "nth"]
    both = seen.merge(true, on=pairs, how="outer", suffixes=("_seen", ""), indicator=True)
    assert (both["_merge"] != "left_only").all(), both[both["_merge"] == "left_only"]
    rq = quickstart.requests
    unanswered = int(((rq["status"] == 0) & rq["endpoint"].astype(str).str.endswith("/command")).sum())
    missed = both[both["_merge"] == "right_only"]
    at_the_end = missed["delivered_s"] >= rq["t_start_s"].max() - 5  # its poll cut off as the users stopped
    assert (~at_the_end).sum() <= unanswered, missed
    # Commands never delivered: the observed ones also count those whose delivery the agents missed.
    assert len(commands) - len(seen) <= len(quickstart.commands) - len(true) + len(missed)
    matched = both[both["_merge"] == "both"]
    for column in ("enqueued_s", "delivered_s", "acked_s"):
        late = (matched[f"{column}_seen"] - matched[column]).dropna()  # the answer comes after the server's moment
        assert len(late) > 0 and (late >= -0.001).all() and (late < 5).all(), column
    changed = tasks[tasks["from_state"] != tasks["to_state"]]
    real = quickstart.tasks[quickstart.tasks["from_state"] != quickstart.tasks["to_state"]]
    for task_id, rows in real.groupby("task_id"):
        claimed = iter(rows["to_state"])
        assert all(s in claimed for s in changed.loc[changed["task_id"] == task_id, "to_state"]), task_id
    assert set(changed["task_id"]) == set(real["task_id"])


@pytest.mark.slow
def test_workers_merge_into_one_table_without_losing_a_row(tmp_path: Path) -> None:
    out = tmp_path / "workers"
    done = smsload(QUICKSTART, "--out", str(out), "--workers", "2", "--duration-s", "16", "--token", TOKEN, "--quiet")
    assert done.returncode == 0, done.stderr
    run = load_run(out)
    r = run.requests
    assert run.manifest["complete"] is True and run.manifest["workers"] == 2
    assert len(r) == run.manifest["locust_requests"] > 500
    assert not r.duplicated(["agent_id", "t_start_s", "endpoint"]).any()
    registered = r[(r["endpoint"] == REGISTER) & (r["method"] == "POST") & r["ok"]]
    # Unique across the two workers; 100 agents each (the operator goes first), so exactly 0..199.
    assert sorted(registered["agent_id"]) == list(range(200))
    assert set(pd.read_parquet(out / "generator.parquet")["process"]) == {"master", "worker-0", "worker-1"}
    _no_token_in(out, TOKEN)


class _Lines:
    """A child's stderr, line by line, with a bounded wait."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stderr is not None
        threading.Thread(target=lambda: [self.lines.put(line) for line in proc.stderr], daemon=True).start()

    def wait_for(self, text: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in time; stderr so far:\n{''.join(self.seen)}")


@pytest.mark.slow
def test_sigint_leaves_a_readable_incomplete_run_and_no_process_behind(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "load", QUICKSTART, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        stderr = _Lines(proc)
        server_pid = int(stderr.wait_for("reference server on", 120).split("(pid ")[1].split(")")[0])
        stderr.wait_for(" s of 60 s", 120)  # the first progress line: users are running
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    run = load_run(out)
    assert run.manifest["complete"] is False and run.manifest["ended_at"] is not None
    assert len(run.requests) == run.manifest["locust_requests"] > 0
    assert run.summary is not None and run.summary["requests"]["count"] == len(run.requests)
    assert not psutil.pid_exists(server_pid)
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert left == []


@pytest.mark.slow
def test_the_locustfile_runs_on_its_own(tmp_path: Path) -> None:
    token = "own-token-77aa"
    before = set(ROOT.glob("runs/quickstart-locust-*"))
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [token], tmp_path / "server.log") as server:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(ROOT / "loadtests" / "locustfile.py"),
                "--scenario",
                QUICKSTART,
                "--host",
                server.base_url,
                "--headless",
                "-t",
                "10s",
                "--only-summary",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(token),
            cwd=tmp_path,
        )
    (out,) = (tmp_path / "runs").iterdir()  # the default run directory, under the working directory
    run = load_run(out)
    # Locust exits 1 when requests failed; that much is allowed, and only then.
    assert done.returncode == 0 or (done.returncode == 1 and run.manifest["locust_failures"] > 0), done.stderr[-3000:]
    assert run.manifest["complete"] is True and run.manifest["planned_duration_s"] == 10
    assert run.manifest["server_tables"] == "server export" and run.tasks["task_id"].nunique() == 10
    assert len(run.requests) == run.manifest["locust_requests"] > 200
    assert set(ROOT.glob("runs/quickstart-locust-*")) == before  # nothing written into the checkout
    _no_token_in(tmp_path / "runs", token)


def test_an_unreachable_host_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = smsload(
        QUICKSTART, "--host", f"http://127.0.0.1:{port}", "--token", "x", "--out", str(tmp_path / "o"), timeout=60
    )
    assert done.returncode == 2
    assert "cannot reach the server" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("name: x\nduration_s: 5\nfleet: {agents: 10, colour: red}\n", "fleet.colour"),
        ("name: x\nduration_s: 5\nfleet: {agents: 10}\nagent: {poll_interval_s: fast}\n", "agent.poll_interval_s"),
    ],
)
def test_a_bad_scenario_exits_2_naming_the_field(tmp_path: Path, content: str, field: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    done = smsload(str(bad), "--out", str(tmp_path / "out"), timeout=60)
    assert done.returncode == 2 and field in done.stderr
    assert "Traceback" not in done.stderr + done.stdout and not (tmp_path / "out").exists()
