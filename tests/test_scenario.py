"""Scenarios: the shipped files load, round-trip and override; every kind of mistake names its field."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from sim.model.distributions import Constant, Empirical, Exponential, LogNormal, Uniform
from sim.model.lifecycle import OsType
from sim.model.retry import RetryPolicy, RetryPolicyName
from sim.scenario import ENDPOINTS, Ramp, Scenario, ScenarioError, TaskRate, TaskWaves, load_scenario, parse_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "sim" / "scenarios"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))

MINIMAL = "name: tiny\nduration_s: 10\nfleet: {agents: 3}\n"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="test.yaml")
    return dict(info.value.problems)


def test_both_shipped_scenarios_are_there() -> None:
    assert {p.name for p in SHIPPED} >= {"quickstart.yaml", "capacity-baseline.yaml"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenario_loads_and_round_trips(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    again = Scenario.model_validate(scenario.to_dict())
    assert again == scenario
    assert again.to_dict() == scenario.to_dict()


def test_quickstart_is_small_and_its_tasks_fit_in_the_run() -> None:
    s = load_scenario(SCENARIOS / "quickstart.yaml")
    assert s.fleet.agents == 200 and s.agent.poll_interval_s == 5 and s.duration_s == 60
    assert s.expected_polls_per_s == pytest.approx(40.0)
    assert isinstance(s.operator.tasks, TaskWaves) and s.operator.tasks.waves
    median_transfer_s = s.fleet.disk_gb.quantile(0.5) * 8000 / s.agent.bandwidth_mbps.quantile(0.5)
    assert median_transfer_s < 15


def test_capacity_baseline_is_ten_thousand_agents_for_an_hour() -> None:
    s = load_scenario(SCENARIOS / "capacity-baseline.yaml")
    assert (s.fleet.agents, s.agent.poll_interval_s, s.duration_s) == (10_000, 30, 3600)
    assert isinstance(s.operator.tasks, TaskRate) and isinstance(s.fleet.arrival, Ramp)


def test_fields_hold_ready_objects() -> None:
    s = parse_scenario(
        MINIMAL
        + """
agent:
  bandwidth_mbps: 500
  subtask_s: {dist: uniform, low: 0.5, high: 2}
  upload_log_s: {dist: empirical, values: [1, 2, 3]}
  retry: {policy: fixed, base_s: 2, cap_s: 2}
server:
  service_ms: {default: {dist: exponential, mean: 2}, poll: {dist: lognormal, median: 0.4, sigma: 0.5}}
"""
    )
    assert s.agent.bandwidth_mbps == Constant(500.0)
    assert s.agent.subtask_s == Uniform(0.5, 2.0)
    assert s.agent.upload_log_s == Empirical((1.0, 2.0, 3.0))
    assert s.agent.retry == RetryPolicy(RetryPolicyName.FIXED, 2.0, 2.0, 5)
    assert s.server.service_ms_for("poll") == LogNormal(0.4, 0.5)
    assert s.server.service_ms_for("register") == Exponential(2.0)
    assert 0.5 <= s.agent.subtask_s.sample(random.Random(1)) <= 2.0
    with pytest.raises(KeyError):
        s.server.service_ms_for("pol")
    assert "delete_task" in ENDPOINTS and "default" not in ENDPOINTS


def test_defaults_fill_in_and_are_written_to_the_manifest_form() -> None:
    s = parse_scenario(MINIMAL)
    assert s.fleet.os_mix == {OsType.LINUX: 1.0}
    d = s.to_dict()
    assert d["agent"]["retry"]["policy"] == "exponential_full_jitter"
    assert d["server"]["service_ms"]["default"] == {"dist": "exponential", "mean": 2.0}
    assert d["fleet"]["arrival"] == {"kind": "all_at_once"}


def test_scenario_is_frozen() -> None:
    s = parse_scenario(MINIMAL)
    with pytest.raises(ValidationError):
        s.duration_s = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.agent.poll_interval_s = 1  # type: ignore[misc]


def test_with_overrides_returns_a_new_validated_scenario() -> None:
    base = load_scenario(SCENARIOS / "quickstart.yaml")
    s = base.with_overrides(agents=5000, duration_s=120, seed=7, fields={"agent.poll_interval_s": 30})
    assert (s.fleet.agents, s.duration_s, s.seed, s.agent.poll_interval_s) == (5000, 120, 7, 30)
    assert base.fleet.agents == 200 and s.operator == base.operator
    assert base.with_overrides() == base
    with pytest.raises(ScenarioError) as info:
        base.with_overrides(agents=0, duration_s=-1)
    assert set(dict(info.value.problems)) == {"fleet.agents", "duration_s"}
    with pytest.raises(ScenarioError) as info:
        base.with_overrides(fields={"agent.poll_interval_s.x": 1})
    assert info.value.problems[0][0] == "agent.poll_interval_s.x"


def test_unknown_key_is_named_with_the_valid_ones() -> None:
    found = problems(MINIMAL + "agent: {poll_intervall_s: 5}\n")
    assert "poll_interval_s" in found["agent.poll_intervall_s"]
    found = problems(MINIMAL + "agent: {bandwidth_mbps: {dist: lognormal, median: 5, sigma: 1, mu: 2}}\n")
    assert "median, sigma" in found["agent.bandwidth_mbps.mu"]


def test_unknown_endpoint_names_the_valid_ones() -> None:
    found = problems(MINIMAL + "server: {service_ms: {default: 1, pol: 2}}\n")
    assert "'poll'" in found["server.service_ms.pol"] and "'pol'" in found["server.service_ms.pol"]
    assert "service_ms.default" in " ".join(problems(MINIMAL + "server: {service_ms: {poll: 2}}\n"))


def test_wrong_type_says_what_was_given() -> None:
    found = problems(MINIMAL.replace("agents: 3", "agents: many"))
    assert "integer" in found["fleet.agents"] and "'many'" in found["fleet.agents"]


def test_negative_interval_is_rejected() -> None:
    found = problems(MINIMAL + "agent: {poll_interval_s: -5}\n")
    assert "greater than 0" in found["agent.poll_interval_s"] and "-5" in found["agent.poll_interval_s"]


def test_os_mix_must_sum_to_one() -> None:
    found = problems(MINIMAL.replace("{agents: 3}", "{agents: 3, os_mix: {LINUX: 0.5, WINDOWS: 0.2}}"))
    assert "summing to 1" in found["fleet.os_mix"] and "0.7" in found["fleet.os_mix"]
    assert "fleet.os_mix.MAC" in problems(MINIMAL.replace("{agents: 3}", "{agents: 3, os_mix: {MAC: 1}}"))


def test_bad_dist_name_and_bad_parameters() -> None:
    found = problems("""
name: tiny
duration_s: 10
fleet: {agents: 3, disk_gb: {dist: gamma, k: 2}}
agent:
  subtask_s: {dist: uniform, low: 3, high: 1}
  bandwidth_mbps: 0
  upload_log_s: {dist: empirical, values: []}
  retry: {base_s: 5, cap_s: 1}
""")
    assert "gamma" in found["fleet.disk_gb"] and "lognormal" in found["fleet.disk_gb"]
    assert "low" in found["agent.subtask_s.high"]
    assert "> 0" in found["agent.bandwidth_mbps"]
    assert "agent.upload_log_s.values" in found
    assert "base_s" in found["agent.retry.cap_s"]


def test_cross_field_rules_report_every_problem() -> None:
    # A model's own cross-field rules run once its fields are valid; across models, all are reported.
    found = problems("""
name: tiny
duration_s: 10
fleet: {agents: 3, os_mix: {LINUX: 0.5}}
agent: {poll_interval_s: 2, poll_jitter_s: 2}
operator: {tasks: {kind: waves, waves: [{at_s: 5, count: 1}, {at_s: 1, count: 1}]}}
""")
    assert {"fleet.os_mix", "agent.poll_jitter_s", "operator.tasks.waves.1.at_s"} <= set(found)
    found = problems(
        MINIMAL.replace("{agents: 3}", "{agents: 3, arrival: {kind: ramp, duration_s: 20}}")
        + "operator: {tasks: {kind: waves, waves: [{at_s: 12, count: 1}]}}\n"
    )
    assert {"fleet.arrival.duration_s", "operator.tasks.waves.0.at_s"} <= set(found)


def test_bad_kind_names_the_valid_kinds() -> None:
    found = problems(MINIMAL.replace("{agents: 3}", "{agents: 3, arrival: {kind: trickle}}"))
    assert "ramp" in found["fleet.arrival"] and "trickle" in found["fleet.arrival"]


def test_missing_required_fields() -> None:
    found = problems("name: tiny\n")
    assert {"duration_s", "fleet"} <= set(found)


def test_yaml_syntax_error_has_line_and_column() -> None:
    found = problems("name: tiny\nfleet: {agents: 3\nduration_s: 10\n")
    assert "line 3" in found[""] and "column" in found[""]


def test_duplicate_keys_are_an_error_and_exponents_are_numbers() -> None:
    assert "duplicate key 'name'" in problems("name: a\nname: b\n")[""]
    assert parse_scenario("name: big\nduration_s: 3.6e3\nfleet: {agents: 1e4}\n").fleet.agents == 10_000


@pytest.mark.parametrize("text", ["", "- 1\n- 2\n", "just a string\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert "mapping" in problems(text)[""]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nope.yaml")
    assert info.value.problems == [("", "no such file")]
    assert str(tmp_path / "nope.yaml") in str(info.value)
