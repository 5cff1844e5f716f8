"""`smsload sim` as a CI gate: exit 1 when the scenario's `slo:` is violated, 0 when it is met, on both engines.

Real runs of a tiny polling scenario; the run directory is complete either way (only the gate failed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.cli import main
from sim.records import load_run
from sim.scenario import validate_scenario

MET = ["p99 of poll < 10 s", "error rate < 50%"]
VIOLATED = ["p99 of poll < 0.001 ms", "error rate < 50%"]


def _scenario_file(tmp_path: Path, slo: list[str]) -> Path:
    data = {
        "name": "gate",
        "seed": 1,
        "duration_s": 40,
        "fleet": {"agents": 40},
        "agent": {"poll_interval_s": 5, "poll_jitter_s": 0.5},
        "server": {"workers": 1, "service_ms": {"default": {"dist": "exponential", "mean": 1.0}}},
        "slo": slo,
    }
    validate_scenario(data)  # the file is a good scenario: only its objectives differ
    path = tmp_path / f"gate-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("engine", ["simpy", "fast"])
def test_sim_exits_1_on_a_violated_slo_and_0_on_a_met_one(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, good = tmp_path / "bad", tmp_path / "good"
    assert main(["sim", str(_scenario_file(tmp_path, VIOLATED)), "--engine", engine, "--out", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "SLO violated" in err and "FAIL" in err
    run = load_run(bad)
    assert run.manifest["complete"] is True  # the run succeeded; only its gate failed
    assert run.summary is not None and run.summary["requests"]["count"] > 0
    assert main(["check", str(bad)]) == 1  # the same verdict as the gate of record
    assert main(["sim", str(_scenario_file(tmp_path, MET)), "--engine", engine, "--out", str(good), "--quiet"]) == 0
    assert "SLO met" in capsys.readouterr().err
    assert main(["check", str(good)]) == 0
