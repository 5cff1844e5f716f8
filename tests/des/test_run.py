"""The simulation end to end: `smsload sim` on the quickstart scenario, its run directory, its rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.des.run import run_des
from sim.model.lifecycle import GONE
from sim.model.oracles import illegal_transitions
from sim.records import REQUEST_SCHEMA, load_run
from sim.scenarios import find_scenario

QUICKSTART = "quickstart"  # by name: the shipped scenario (a path is tested with the malformed files)


def smsload(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quickstart_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("des")
    a, b = base / "a", base / "b"
    for out in (a, b):
        done = smsload("sim", QUICKSTART, "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert str(out) in done.stdout
    return a, b


def test_run_directory_is_complete_with_the_schema(quickstart_runs: tuple[Path, Path]) -> None:
    run = load_run(quickstart_runs[0])
    assert run.manifest["complete"] is True and run.manifest["executor"] == "des"
    assert run.manifest["scenario"]["name"] == "quickstart" and run.manifest["seed"] == 42
    assert {"simpy", "pyarrow"} <= set(run.manifest["versions"])
    # The manifest fields every executor writes (sim.records), with a simulation's values.
    m = run.manifest
    assert (m["clock"], m["agents"], m["planned_duration_s"], m["duration_s"]) == ("virtual", 200, 60, 60.0)
    assert m["wall_s"] > 0 and m["target"] is None and m["t0_epoch"] is None
    assert m["server_tables"] == "the simulated control plane" and run.summary["duration_s"] == 60.0
    assert list(run.requests.columns) == REQUEST_SCHEMA.names
    assert len(run.requests) == run.manifest["requests"] > 2000
    assert set(run.requests["executor"]) == {"des"}
    assert run.requests["endpoint"].str.contains("{").any()  # path templates, not raw paths
    assert run.requests["queue_wait_ms"].notna().all()
    assert (run.requests["t_start_s"] >= run.requests["t_sched_s"]).all()
    endpoints = run.summary["endpoints"]
    poll = endpoints["GET /v1/sms/sources/{source_id}/command"]
    assert set(poll["latency_ms"]) >= {"p50", "p90", "p95", "p99", "p99_9", "max"}
    assert poll["count"] == (run.requests["endpoint"] == "/v1/sms/sources/{source_id}/command").sum()
    assert run.summary["tasks"]["created"] == 20
    assert run.summary["dispatch"]["commands"] == len(run.commands) > 0
    c = run.commands.dropna(subset=["acked_s"])
    assert ((c["enqueued_s"] <= c["delivered_s"]) & (c["delivered_s"] <= c["acked_s"])).all()


def test_same_seed_gives_identical_tables(quickstart_runs: tuple[Path, Path]) -> None:
    a, b = quickstart_runs
    for name in ("requests.parquet", "tasks.parquet", "commands.parquet", "summary.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_another_run(tmp_path: Path) -> None:
    done = smsload("sim", QUICKSTART, "--out", str(tmp_path / "c"), "--seed", "7", "--quiet")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "requests.parquet").read_bytes() != b""
    assert load_run(tmp_path / "c").manifest["seed"] == 7


def test_every_task_ends_through_legal_transitions_only(quickstart_runs: tuple[Path, Path]) -> None:
    tasks = load_run(quickstart_runs[0]).tasks
    assert tasks["task_id"].nunique() == 20
    for task_id, rows in tasks.groupby("task_id", sort=False):
        assert illegal_transitions(rows.itertuples()) == [], task_id
        assert rows["to_state"].iloc[-1] == GONE, f"{task_id} ended in {rows['to_state'].iloc[-1]}"
        states = set(rows["to_state"])
        assert {"RUNNING", "MIGRATE_SUCCESS", "SYNCING", "SYNC_SUCCESS", "DELETING"} <= states


def test_progress_per_subtask_never_goes_down(quickstart_runs: tuple[Path, Path]) -> None:
    tasks = load_run(quickstart_runs[0]).tasks
    for task_id, rows in tasks.groupby("task_id", sort=False):
        # A restart begins the migration again and a sync adds fresh subtasks: count runs apart.
        run_no = rows["trigger"].isin(["restart", "sync"]).cumsum()
        progress = rows.assign(run=run_no)[rows["progress"] >= 0]
        for _, one in progress.groupby(["run", "subtask"]):
            assert one["progress"].is_monotonic_increasing, task_id


def test_stops_failures_and_logs_go_through_legal_transitions(tmp_path: Path) -> None:
    # The quickstart's probabilities raised, so that every branch of the lifecycle is taken.
    scenario = find_scenario(QUICKSTART).with_overrides(
        fields={
            "agent.failure_probability": 0.5,
            "operator.stop_probability": 0.5,
            "operator.log_collect_probability": 0.5,
        }
    )
    tasks = load_run(run_des(scenario, tmp_path / "busy")).tasks
    triggers = tasks["trigger"].value_counts()
    for trigger in (
        "start",
        "sync",
        "delete",
        "result:DELETE:success",
        "progress:last-subtask-100",
        "stop",
        "result:STOP:success",
        "collect_log",
        "result:UPLOAD_LOG:success",
    ):
        assert triggers.get(trigger, 0) >= 1, trigger
    assert triggers.get("result:START:fail", 0) >= 3 and triggers.get("restart", 0) >= 3
    for task_id, rows in tasks.groupby("task_id", sort=False):
        assert illegal_transitions(rows.itertuples()) == [], task_id


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("name: x\nduration_s: -5\nfleet: {agents: 10}\n", "duration_s"),
        ("name: x\nduration_s: 5\nfleet: {agents: 10, colour: red}\n", "fleet.colour"),
        ("name: x\nduration_s: 5\nfleet: {agents: 10}\nagent: {poll_interval_s: fast}\n", "agent.poll_interval_s"),
    ],
)
def test_malformed_scenario_exits_2_naming_the_field(tmp_path: Path, content: str, field: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    done = smsload("sim", str(bad), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert field in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "out").exists()


def test_existing_run_is_not_overwritten(quickstart_runs: tuple[Path, Path]) -> None:
    before = (quickstart_runs[0] / "requests.parquet").read_bytes()
    done = smsload("sim", QUICKSTART, "--out", str(quickstart_runs[0]))
    assert done.returncode == 2 and "already holds a run" in done.stderr
    assert (quickstart_runs[0] / "requests.parquet").read_bytes() == before


def test_interrupted_run_is_readable_and_marked_incomplete(tmp_path: Path) -> None:
    scenario = find_scenario(QUICKSTART)

    def interrupt(now: float, total: float) -> None:
        if now >= total / 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_des(scenario, tmp_path / "cut", progress=interrupt)
    run = load_run(tmp_path / "cut")
    assert run.manifest["complete"] is False and run.manifest["duration_s"] == pytest.approx(30.0)
    assert 0 < run.requests["t_start_s"].max() <= 30.0 + 1e-6
    assert run.summary is not None and run.summary["requests"]["count"] == len(run.requests)
