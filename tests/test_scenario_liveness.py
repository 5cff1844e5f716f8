"""The scenario's `server.liveness` and `service_ms.poll_write`: defaults, the file form, and every mistake named."""

from __future__ import annotations

import pytest

from sim.model.distributions import Constant, Exponential
from sim.model.liveness import Liveness, LivenessWrite
from sim.scenario import Scenario, ScenarioError, parse_scenario

MINIMAL = "name: tiny\nduration_s: 10\nfleet: {agents: 3}\n"


def problems(text: str) -> dict[str, str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, source="test.yaml")
    return dict(info.value.problems)


def test_the_default_is_the_realistic_setting() -> None:
    live = parse_scenario(MINIMAL).server.liveness
    assert live == Liveness(LivenessWrite.COALESCED, coalesce_s=30.0, disconnect_after_s=90.0)


def test_a_liveness_section_loads_and_round_trips() -> None:
    s = parse_scenario(MINIMAL + "server: {liveness: {write: every_poll, disconnect_after_s: 20}}\n")
    assert s.server.liveness == Liveness(LivenessWrite.EVERY_POLL, 30.0, 20.0)
    assert s.to_dict()["server"]["liveness"] == {"write": "every_poll", "coalesce_s": 30.0, "disconnect_after_s": 20.0}
    assert Scenario.model_validate(s.to_dict()) == s
    changed = s.with_overrides(fields={"server.liveness.write": "coalesced", "server.liveness.coalesce_s": 10})
    assert changed.server.liveness == Liveness(LivenessWrite.COALESCED, 10.0, 20.0)


def test_a_bare_off_means_off() -> None:
    # YAML 1.1 reads an unquoted `off` as false.
    assert parse_scenario(MINIMAL + "server: {liveness: {write: off}}\n").server.liveness.write is LivenessWrite.OFF


def test_poll_write_has_its_own_service_time_else_default() -> None:
    s = parse_scenario(MINIMAL + "server: {service_ms: {default: 2, poll: 0.5, poll_write: 1.5}}\n")
    assert s.server.service_ms_for("poll_write") == Constant(1.5)
    assert parse_scenario(MINIMAL).server.service_ms_for("poll_write") == Exponential(2.0)


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ("{liveness: {write: sometimes}}", "server.liveness.write", ["every_poll", "sometimes"]),
        ("{liveness: {writes: off}}", "server.liveness.writes", ["write, coalesce_s, disconnect_after_s"]),
        ("{liveness: {coalesce_s: -1}}", "server.liveness.coalesce_s", ["-1"]),
        ("{liveness: {disconnect_after_s: 0}}", "server.liveness.disconnect_after_s", ["greater than 0"]),
        ("{liveness: {coalesce_s: 60, disconnect_after_s: 50}}", "server.liveness.disconnect_after_s", ["coalesce_s"]),
        ("{liveness: off}", "server.liveness", ["mapping", "write"]),
    ],
)
def test_mistakes_name_their_field(section: str, path: str, words: list[str]) -> None:
    found = problems(MINIMAL + f"server: {section}\n")
    assert path in found, found
    assert all(w in found[path] for w in words), found[path]


def test_agents_polling_on_time_must_not_look_disconnected() -> None:
    found = problems(MINIMAL + "agent: {poll_interval_s: 60, poll_jitter_s: 5}\n")
    message = found["server.liveness.disconnect_after_s"]
    assert "95" in message and "poll_interval_s" in message  # 30 s coalescing + 60 s + 5 s
    every = "server: {liveness: {write: every_poll, disconnect_after_s: 50}}\n"
    assert (
        "65"
        in problems(MINIMAL + "agent: {poll_interval_s: 60, poll_jitter_s: 5}\n" + every)[
            "server.liveness.disconnect_after_s"
        ]
    )
    off = "server: {liveness: {write: 'off', disconnect_after_s: 50}}\n"  # nothing recorded: nothing to check
    assert parse_scenario(MINIMAL + "agent: {poll_interval_s: 60}\n" + off).server.liveness.write is LivenessWrite.OFF
