"""`smsload demo` as a user runs it: the quick demo end to end, Ctrl-C, and its small helpers.

The demo runs in a child process (it starts the reference server and Locust, and Locust must
never be imported into the test process). Waits are bounded; nothing asserts a duration.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sim.demo import QUICKSTART, shortened
from sim.records import load_run
from sim.scenario import load_scenario
from sim.scenarios import find_scenario

ROOT = Path(__file__).parents[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SMS_AUTH_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _smsload(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_quick_demo_writes_every_page_and_prints_where_they_are(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = _smsload("demo", "--quick", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    for step in range(1, 6):
        assert f"{step}/5 " in done.stdout
    printed = dict(
        re.findall(
            r"^  (load test report|simulation report|10x fleet report|comparison|"
            r"calibrated scenario) +(\S+)$",
            done.stdout,
            re.MULTILINE,
        )
    )
    assert len(printed) == 5, done.stdout
    for path in printed.values():
        assert Path(path).is_file(), path
    assert printed["comparison"] == str(out / "compare.html")
    assert "<html" in Path(printed["comparison"]).read_text().lower()
    assert re.search(r"^  whole run +polls/s +[\d.]+ +[\d.]+ +[+-]\d", done.stdout, re.MULTILINE), done.stdout
    assert "predicted for 2,000 agents (10x), whole run:" in done.stdout
    runs = {name: load_run(out / name) for name in ("load", "sim", "sim-10x")}
    assert {r.manifest["executor"] for r in runs.values()} == {"locust", "des"}
    assert all(r.manifest["complete"] for r in runs.values())
    assert (
        runs["sim-10x"].manifest["scenario"]["fleet"]["agents"]
        == 10 * runs["sim"].manifest["scenario"]["fleet"]["agents"]
    )
    calibrated = load_scenario(out / "calibrated.yaml")  # the file the simulations ran, readable as a scenario
    assert calibrated.server.workers == runs["sim"].manifest["scenario"]["server"]["workers"]

    # The check of issue 5: `smsload compare SIM_RUN LOAD_RUN` works on the demo's runs.
    page = tmp_path / "sim-vs-load.html"
    compared = _smsload("compare", str(out / "sim"), str(out / "load"), "--out", str(page), cwd=tmp_path)
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert page.is_file() and str(page) in compared.stdout


@pytest.mark.slow
def test_ctrl_c_in_the_load_test_leaves_the_run_and_stops_the_server(tmp_path: Path) -> None:
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.cli", "demo", "--quick", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=tmp_path,
    )
    seen: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded by the demo's own limits and the wait below
            seen.append(line)
            if " s of 10 s" in line:  # the load test's first progress line: users are running
                break
        server_pid = int(next(x for x in seen if "reference server on" in x).split("(pid ")[1].split(")")[0])
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
        seen.append(rest)
        assert proc.returncode == 130, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "interrupted" in "".join(seen)
    run = load_run(out / "load")
    assert run.manifest["complete"] is False and len(run.requests) > 0
    assert not (out / "sim").exists()
    assert not psutil.pid_exists(server_pid)
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_shortened_squeezes_the_task_waves_into_the_run() -> None:
    base = find_scenario(QUICKSTART)  # task waves at 5 s and 15 s of 60 s
    short = shortened(base, 10.0)
    assert short.duration_s == 10.0
    assert [w.at_s for w in short.operator.tasks.waves] == pytest.approx([5 / 6, 2.5])
    assert [w.count for w in short.operator.tasks.waves] == [w.count for w in base.operator.tasks.waves]
    assert shortened(base, 120.0).operator.tasks == base.operator.tasks  # never stretched


def test_a_directory_holding_something_is_refused(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("keep me")
    done = _smsload("demo", "--quick", "--out", str(tmp_path), cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("smsload demo: error:") and "not empty" in done.stderr
    assert (tmp_path / "old.txt").read_text() == "keep me"
