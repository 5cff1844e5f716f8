"""The fast engine's run directory and command line: what `report`, `compare` and the notebooks read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main
from sim.fast.engine import simulate
from sim.fast.run import run_fast
from sim.fast.scope import not_modelled
from sim.records import load_run
from sim.scenario import AgentRestartFault, Scenario, validate_scenario
from sim.scenarios import find_scenario


def polling(**changes: object) -> Scenario:
    data: dict = {
        "name": "fastrun",
        "seed": 2,
        "duration_s": 120,
        "fleet": {"agents": 2000, "arrival": {"kind": "ramp", "duration_s": 10}},
        "agent": {"poll_interval_s": 5, "poll_jitter_s": 0.5},
        "server": {"workers": 2, "service_ms": {"default": {"dist": "exponential", "mean": 1.0}}},
        "faults": [{"kind": "outage", "start_s": 60, "duration_s": 10}],
    }
    data.update(changes)
    return validate_scenario(data)


def test_a_fast_run_directory_holds_exact_counts_as_histograms(tmp_path: Path) -> None:
    s = polling()
    out = run_fast(s, tmp_path / "run")
    run = load_run(out)
    manifest, summary = run.manifest, run.summary
    assert manifest["executor"] == "fast" and manifest["clock"] == "virtual" and manifest["complete"] is True
    assert manifest["not_modelled"] == []
    assert len(run.requests) == 0 and len(run.tasks) == 0
    h = run.histograms
    # Every agent registered once (no failure before the outage), and the counts are exact.
    reg = h[h["method"] == "POST"]
    assert reg["count"].sum() == 2000 and reg["ok"].all()
    polls = h[h["endpoint"].str.endswith("/command")]
    refused = polls[polls["error"] == "refused"]
    assert refused["t_bin_s"].min() >= 59 and refused["t_bin_s"].max() < 70
    assert summary is not None
    poll_summary = summary["endpoints"]["GET /v1/sms/sources/{source_id}/command"]
    assert poll_summary["count"] == polls["count"].sum()
    assert summary["server"]["workers"] == 2 and 0 < summary["server"]["busy_fraction"] < 1
    assert summary["server"]["registrations"] == 2000


def test_the_same_seed_gives_the_same_counts() -> None:
    a, b = simulate(polling()), simulate(polling())
    assert (a.counts == b.counts).all()
    assert (simulate(polling(seed=3)).counts != a.counts).any()


def test_an_interrupted_fast_run_is_written_and_marked_incomplete(tmp_path: Path) -> None:
    def stop_halfway(now: float, duration: float) -> None:
        if now >= duration / 2:
            raise KeyboardInterrupt

    out = run_fast(polling(), tmp_path / "run", progress=stop_halfway)
    run = load_run(out)
    assert run.manifest["complete"] is False
    assert 50 <= run.manifest["duration_s"] < 120
    assert run.histograms["count"].sum() > 0


def test_the_engine_says_what_it_leaves_out() -> None:
    quickstart = find_scenario("quickstart")
    assert any("operator" in line for line in not_modelled(quickstart))
    slow = polling(faults=[{"kind": "slow_store", "start_s": 60, "duration_s": 10, "added_ms": 5}])
    [line] = not_modelled(slow)
    assert line.startswith("faults of kind slow_store:") and "--engine simpy" in line
    assert not_modelled(polling()) == []  # an outage it models


def test_smsload_sim_engine_fast_and_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(json.dumps(polling().to_dict()))
    assert main(["sim", str(scenario_file), "--engine", "fast", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    assert load_run(tmp_path / "a").manifest["executor"] == "fast"
    # auto: a polling-only scenario of 10,000 agents or more goes to the fast engine, a smaller one to SimPy.
    assert main(["sim", str(scenario_file), "--agents", "10000", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    assert load_run(tmp_path / "b").manifest["executor"] == "fast"
    args = ["sim", str(scenario_file), "--duration-s", "80", "--out", str(tmp_path / "c"), "--quiet"]
    assert main([*args[:2], "--agents", "50", *args[2:]]) == 0
    assert load_run(tmp_path / "c").manifest["executor"] == "des"
    # A scenario with operator work runs on the fast engine only when asked, saying what it leaves out.
    quick = ["sim", "quickstart", "--engine", "fast", "--out", str(tmp_path / "d")]
    assert main(quick) == 0
    assert "not modelled" in capsys.readouterr().err
    assert load_run(tmp_path / "d").manifest["not_modelled"]
    assert main(["report", str(tmp_path / "d")]) == 0


def test_auto_keeps_a_scenario_with_faults_the_fast_engine_leaves_out_on_simpy() -> None:
    from sim.des.cli import pick_engine

    big = polling().with_overrides(agents=20_000)
    assert pick_engine("auto", big) == "fast"
    restarts = big.model_copy(update={"faults": (AgentRestartFault(start_s=10, duration_s=5, fraction=0.1),)})
    assert any("agent_restart" in line for line in not_modelled(restarts))
    assert pick_engine("auto", restarts) == "simpy" and pick_engine("fast", restarts) == "fast"
