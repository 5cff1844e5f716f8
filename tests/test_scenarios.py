"""The shipped scenarios as package data, and finding a scenario by path or by name (`sim.scenarios`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sim.scenario import ScenarioError, load_scenario
from sim.scenarios import find_scenario, shipped_names, shipped_text

PACKAGED = Path(__file__).resolve().parents[1] / "sim" / "scenarios"


def test_every_yaml_file_in_the_package_is_a_shipped_scenario() -> None:
    assert shipped_names() == sorted(p.stem for p in PACKAGED.glob("*.yaml"))
    assert {"quickstart", "capacity-baseline"} <= set(shipped_names())


@pytest.mark.parametrize("name", shipped_names())
def test_a_name_gives_the_shipped_scenario(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing of that name here
    by_path = load_scenario(PACKAGED / f"{name}.yaml")
    assert find_scenario(name) == by_path
    assert find_scenario(f"{name}.yaml") == by_path
    assert shipped_text(name) == (PACKAGED / f"{name}.yaml").read_text(encoding="utf-8")


def test_a_file_wins_over_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("quickstart").write_text("name: mine\nduration_s: 10\nfleet: {agents: 3}\n")
    assert find_scenario("quickstart").name == "mine"
    assert find_scenario(tmp_path / "quickstart").name == "mine"
    assert find_scenario("quickstart.yaml").name == "quickstart"  # no file by that name: the shipped one


def test_a_path_that_does_not_exist_is_not_taken_for_a_name(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        find_scenario(tmp_path / "quickstart.yaml")  # a directory part: a path, never a name
    assert "no such file" in str(info.value)


def test_neither_a_file_nor_a_name_lists_the_shipped_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScenarioError) as info:
        find_scenario("quickstrat")
    assert str(info.value) == (
        "quickstrat: no such file, and no shipped scenario of that name "
        "(shipped: capacity-baseline, quickstart, reconnect-storm)"
    )
    (tmp_path / "adir").mkdir()
    with pytest.raises(ScenarioError) as info:
        find_scenario("adir")
    assert "cannot read the file" in str(info.value)


def test_smsload_sim_takes_a_name_and_an_unknown_one_is_one_line(tmp_path: Path) -> None:
    def sim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sim.cli", "sim", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    done = sim("quickstart", "--duration-s", "20", "--agents", "20", "--out", "q", "--quiet")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "q" / "manifest.json").is_file()
    wrong = sim("nope", "--out", "n")
    assert wrong.returncode == 2 and not (tmp_path / "n").exists()
    assert wrong.stderr.strip().splitlines() == [
        "smsload sim: error: nope: no such file, and no shipped scenario of that name "
        "(shipped: capacity-baseline, quickstart, reconnect-storm)"
    ]
