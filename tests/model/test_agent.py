"""The agent model stepped by hand: no engine, no clock, the real control plane in memory."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable
from dataclasses import replace

import pytest

from sim.model.agent import Agent, AgentSpec, stationary_offset
from sim.model.api import InMemoryApi
from sim.model.commands import CommandName
from sim.model.controlplane import TaskSpec
from sim.model.distributions import Constant
from sim.model.intents import Call, Outcome, Sleep
from sim.model.lifecycle import Action, OsType, TaskState, TaskType
from sim.model.retry import RetryPolicy, RetryPolicyName

SPEC = AgentSpec(
    index=7,
    os_type=OsType.LINUX,
    disk_bytes=10 * 10**9,
    bandwidth_mbps=800.0,
    poll_interval_s=5.0,
    poll_jitter_s=0.5,
    progress_interval_s=2.0,
    subtask_s=Constant(1.0),
    failure_probability=0.0,
    upload_log_s=Constant(3.0),
    sync_fraction=0.1,
    retry=RetryPolicy(RetryPolicyName.EXPONENTIAL, base_s=1.0, cap_s=4.0, max_attempts=4),
)
TRANSFER_S = 10 * 10**9 * 8 / 800e6  # 100 s


class Driver:
    """Steps one agent generator against an API by hand: Sleep advances t, a Call is answered at once."""

    def __init__(
        self, agent: Agent, api: InMemoryApi, fault: Callable[[Call, float], Outcome | None] = lambda call, t: None
    ) -> None:
        self.agent, self.api, self.fault = agent, api, fault
        self.gen = agent.run()
        self.t = 0.0
        self.calls: list[tuple[float, Call, Outcome]] = []
        self.sleeps: list[float] = []
        self._intent = next(self.gen)

    def run_until(self, t_end: float) -> None:
        while self.t < t_end:
            intent = self._intent
            if isinstance(intent, Sleep):
                self.sleeps.append(intent.seconds)
                self.t += intent.seconds
                self._intent = self.gen.send(None)
            else:
                outcome = self.fault(intent, self.t) or self.api.handle(intent, self.t)
                self.calls.append((self.t, intent, outcome))
                self._intent = self.gen.send(outcome)

    def calls_to(self, endpoint: str) -> list[tuple[float, Call, Outcome]]:
        return [c for c in self.calls if c[1].endpoint == endpoint]


@pytest.fixture
def api() -> InMemoryApi:
    return InMemoryApi()


def _task(api: InMemoryApi, source_id: str, task_type: TaskType = TaskType.MIGRATE_FILE) -> str:
    return api.cp.create_task("default", TaskSpec("t", task_type, source_id), 0.0)


def _state(api: InMemoryApi, task_id: str) -> TaskState:
    return api.cp.get_task("default", task_id).state


def _started(api: InMemoryApi, seed: int, spec: AgentSpec = SPEC, **driver: object) -> tuple[Driver, str]:
    """An agent that has registered and whose source has a task just started."""
    d = Driver(Agent(spec, random.Random(seed)), api, **driver)  # type: ignore[arg-type]
    d.run_until(1)
    task_id = _task(api, d.agent.source_id)
    api.cp.act("default", task_id, Action.START, d.t)
    return d, task_id


def test_registers_then_polls_at_the_interval(api: InMemoryApi) -> None:
    d = Driver(Agent(SPEC, random.Random(1)), api)
    d.run_until(60)
    assert d.calls[0][1].endpoint == "register"
    src, _ = api.cp.get_source("default", d.agent.source_id)
    assert src.name == "agent-0000007" and src.total_bytes == 10 * 10**9 and src.connected
    polls = [t for t, call, _ in d.calls_to("poll")]
    assert len(polls) >= 10
    assert polls[0] <= SPEC.poll_interval_s + SPEC.poll_jitter_s
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    assert all(4.5 - 1e-9 <= g <= 5.5 + 1e-9 for g in gaps)
    assert all(call.path == f"/v1/sms/sources/{d.agent.source_id}/command" for _, call, _ in d.calls_to("poll"))


def test_stationary_first_poll_has_the_equilibrium_mean() -> None:
    # Forward recurrence time of a renewal process: E = E[X^2] / (2 E[X]); X ~ U(T-j, T+j).
    rng = random.Random(3)
    T, j = 30.0, 10.0
    samples = [stationary_offset(T, j, rng) for _ in range(40000)]
    expected = (T * T + j * j / 3) / (2 * T)
    assert abs(statistics.fmean(samples) - expected) < 4 * statistics.stdev(samples) / 200
    assert max(samples) <= T + j and min(samples) >= 0


def test_start_runs_every_subtask_in_order_to_migrate_success(api: InMemoryApi) -> None:
    d, task_id = _started(api, 2)
    d.run_until(200)
    assert _state(api, task_id) is TaskState.MIGRATE_SUCCESS
    reports = [(c.body["subtask_name"], c.body["progress"]) for _, c, o in d.calls_to("progress")]
    assert all(o.ok for _, _, o in d.calls_to("progress"))
    order = list(dict.fromkeys(name for name, _ in reports))
    assert order == [
        "CREATE_CLOUD_SERVER",
        "ATTACH_AGENT_IMAGE",
        "SSL_CONFIG",
        "FORMAT_DISK_LINUX_FILE",
        "MIGRATE_LINUX_FILE",
        "CONFIGURE_LINUX_FILE",
        "DETTACH_AGENT_IMAGE",
    ]
    transfer = [t for t, c, _ in d.calls_to("progress") if c.body["subtask_name"] == "MIGRATE_LINUX_FILE"]
    assert transfer[-1] - transfer[0] == pytest.approx(TRANSFER_S, abs=1.0)
    assert len(transfer) >= TRANSFER_S / SPEC.progress_interval_s - 2  # reported on its cadence
    # The agent acknowledged START once and kept polling throughout the transfer.
    acks = [c.body for _, c, _ in d.calls_to("command_result")]
    assert acks == [{"command_name": "START", "result": "success", "result_detail": {}}]
    polls_during = [t for t, _, _ in d.calls_to("poll") if transfer[0] < t < transfer[-1]]
    assert len(polls_during) >= TRANSFER_S / 5.5 - 1


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_progress_reports_come_every_interval_plus_its_jitter(api: InMemoryApi, jitter: float) -> None:
    d, _ = _started(api, 2, replace(SPEC, progress_jitter_s=jitter))
    d.run_until(200)
    transfer = [t for t, c, _ in d.calls_to("progress") if c.body["subtask_name"] == "MIGRATE_LINUX_FILE"]
    gaps = [b - a for a, b in zip(transfer[:-2], transfer[1:-1])]  # the last: 100 at the subtask's end
    assert len(gaps) >= TRANSFER_S / (SPEC.progress_interval_s + jitter) - 3
    interval = SPEC.progress_interval_s
    assert all(interval - jitter - 1e-9 <= g <= interval + jitter + 1e-9 for g in gaps)
    if jitter:  # drawn anew for each report, over the whole range
        assert statistics.stdev(gaps) > jitter / 4 and max(gaps) - min(gaps) > jitter
    else:  # in lockstep
        assert max(gaps) - min(gaps) < 1e-9


def test_stop_pauses_mid_transfer_and_start_resumes(api: InMemoryApi) -> None:
    d, task_id = _started(api, 4)
    d.run_until(50)  # well into the transfer
    api.cp.act("default", task_id, Action.STOP, d.t)
    d.run_until(70)
    assert _state(api, task_id) is TaskState.ABORT
    stopped_at = max(t for t, c, _ in d.calls_to("command_result") if c.body["command_name"] == "STOP")
    assert not [t for t, _, _ in d.calls_to("progress") if t > stopped_at]  # paused: no reports
    progress_at_stop = api.cp.get_task("default", task_id).current_subtask.progress
    assert 0 < progress_at_stop < 100
    api.cp.act("default", task_id, Action.START, d.t)
    d.run_until(200)
    assert _state(api, task_id) is TaskState.MIGRATE_SUCCESS
    after = [
        c.body["progress"]
        for t, c, _ in d.calls_to("progress")
        if t > stopped_at and c.body["subtask_name"] == "MIGRATE_LINUX_FILE"
    ]
    assert after[0] >= progress_at_stop  # resumed, not restarted
    assert all(o.ok for _, _, o in d.calls_to("progress"))


def test_sync_then_delete(api: InMemoryApi) -> None:
    d, task_id = _started(api, 5)
    d.run_until(200)
    api.cp.act("default", task_id, Action.SYNC, d.t)
    d.run_until(240)
    assert _state(api, task_id) is TaskState.SYNC_SUCCESS
    sync = [t for t, c, _ in d.calls_to("progress") if c.body["subtask_name"] == "SYNC_LINUX_FILE"]
    assert sync[-1] - sync[0] == pytest.approx(TRANSFER_S * SPEC.sync_fraction, abs=1.0)
    api.cp.act("default", task_id, Action.DELETE, d.t)
    d.run_until(260)
    with pytest.raises(Exception, match="not found"):
        api.cp.get_task("default", task_id)
    assert [k[0] for k in d.agent.executed] == ["START", "SYNC", "DELETE"]
    assert d.agent.violations == []


def test_upload_log_is_acknowledged_when_the_upload_is_done(api: InMemoryApi) -> None:
    d = Driver(Agent(SPEC, random.Random(6)), api)
    d.run_until(1)
    task_id = _task(api, d.agent.source_id)
    api.cp.act("default", task_id, Action.COLLECT_LOG, d.t, log_bucket="logs")
    d.run_until(30)
    delivered = [t for t, c, o in d.calls_to("poll") if o.body.get("command_name") == "UPLOAD_LOG"]
    acked = [t for t, c, _ in d.calls_to("command_result")]
    assert len(acked) == 1 and acked[0] - delivered[0] == pytest.approx(3.0)
    assert d.agent.executed == [("UPLOAD_LOG", d.agent.executed[0][1])]  # re-deliveries not re-run
    assert api.cp.get_task("default", task_id).log_collect_status.value == "UPLOADED"


def test_redelivered_command_is_not_run_twice(api: InMemoryApi) -> None:
    lost = []

    def lose_first_ack(call: Call, t: float) -> Outcome | None:
        if call.endpoint == "command_result" and not lost:
            lost.append(t)
            return Outcome(400, {"error_code": "SMS.9999", "error_msg": "lost"})  # not retried, not accepted
        return None

    d, task_id = _started(api, 7, fault=lose_first_ack)
    d.run_until(30)
    start_polls = [t for t, _, o in d.calls_to("poll") if o.body.get("command_name") == "START"]
    assert len(start_polls) == 2  # delivered again because the first ack was lost
    assert d.agent.executed.count(("START", task_id)) == 1
    assert d.agent.stats.redeliveries == 1
    assert len(d.calls_to("get_task")) == 1  # the migration began once


def test_failure_is_reported_and_restart_runs_again(api: InMemoryApi) -> None:
    d, task_id = _started(api, 8, replace(SPEC, failure_probability=1.0))
    d.run_until(120)
    assert _state(api, task_id) is TaskState.MIGRATE_FAIL
    fails = [c.body for _, c, o in d.calls_to("command_result") if c.body["result"] == "fail"]
    assert fails == [{"command_name": "START", "result": "fail", "result_detail": {}}]
    d.agent.spec = replace(SPEC, failure_probability=0.0)
    api.cp.act("default", task_id, Action.RESTART, d.t)
    d.run_until(300)
    assert _state(api, task_id) is TaskState.MIGRATE_SUCCESS


def test_retries_follow_the_policy_on_5xx(api: InMemoryApi) -> None:
    down_until = 20.0

    def outage(call: Call, t: float) -> Outcome | None:
        return Outcome(503, {"error_code": "SMS.2007", "error_msg": "down"}) if 1 < t < down_until else None

    d = Driver(Agent(SPEC, random.Random(9)), api, fault=outage)
    d.run_until(40)
    failed = [t for t, c, o in d.calls_to("poll") if o.status == 503]
    first = failed[0]
    # exponential: 1, 2, 4 seconds between the four attempts of one poll
    assert [round(b - a, 6) for a, b in zip(failed, failed[1:4])] == [1.0, 2.0, 4.0]
    assert any(o.ok for t, _, o in d.calls_to("poll") if t >= down_until)
    assert first < down_until


def test_no_retry_policy_tries_once(api: InMemoryApi) -> None:
    spec = replace(SPEC, retry=RetryPolicy(RetryPolicyName.NONE))

    def refused(call: Call, t: float) -> Outcome | None:
        return Outcome(0, None, error="refused") if call.endpoint == "poll" else None

    d = Driver(Agent(spec, random.Random(10)), api, fault=refused)
    d.run_until(30)
    polls = [t for t, _, _ in d.calls_to("poll")]
    assert all(4.5 - 1e-9 <= b - a <= 5.5 + 1e-9 for a, b in zip(polls, polls[1:]))


def test_command_after_delete_is_a_violation(api: InMemoryApi) -> None:
    d = Driver(Agent(SPEC, random.Random(11)), api)
    d.run_until(1)
    task_id = _task(api, d.agent.source_id)
    api.cp.act("default", task_id, Action.DELETE, d.t)
    d.run_until(12)
    # A broken server re-queues START for the deleted task: the agent notices.
    from sim.model.entities import CommandRecord

    with api.cp.store.write() as tx:
        tx.add_command(CommandRecord(d.agent.source_id, task_id, CommandName.START, {"task_id": task_id}, d.t))
    d.run_until(24)
    assert d.agent.violations == [f"START for task {task_id} after its DELETE"]


@pytest.mark.parametrize(("name", "result"), [("SKIP", "success"), ("PREMIGRATE", "fail"), ("RESIZE", "fail")])
def test_commands_outside_the_model_are_answered_not_left_pending(api: InMemoryApi, name: str, result: str) -> None:
    """A server of the current public SDK sends SKIP or PREMIGRATE: the agent answers each (SKIP as
    done, the rest `fail`, recorded) until the server stops re-delivering it, and keeps polling."""
    pending = {"on": False}

    def foreign_server(call: Call, t: float) -> Outcome | None:
        if call.endpoint == "poll" and pending["on"]:
            return Outcome(200, {"command_name": name, "command_param": {"task_id": "t-1"}}, 0.01)
        if call.endpoint == "command_result" and call.body["command_name"] == name:
            pending["on"] = False  # the acknowledgement takes it off the queue
            return Outcome(200, {}, 0.01)
        return None

    d = Driver(Agent(SPEC, random.Random(5)), api, fault=foreign_server)
    d.run_until(1)
    pending["on"] = True
    d.run_until(30)
    acks = [call.body for _, call, _ in d.calls_to("command_result")]
    assert acks == [{"command_name": name, "result": result, "result_detail": {}}]
    assert len(d.calls_to("poll")) >= 5 and not pending["on"]
    declined = [] if name == "SKIP" else [f"declined {name} for task t-1: not modelled, answered fail"]
    assert d.agent.violations == declined


# -- converging after faults: unsent state re-sent, restarts ----------------------------------

DOWN = Outcome(503, {"error_code": "SMS.0503", "error_msg": "down"})


def _down_for(endpoint: str, start: float, end: float) -> tuple[list[float], object]:
    """A fault answering 503 to `endpoint` (every endpoint for "*") from `start` to `end`."""
    refused: list[float] = []

    def fault(call: Call, t: float) -> Outcome | None:
        if start <= t < end and endpoint in ("*", call.endpoint):
            refused.append(t)
            return DOWN
        return None

    return refused, fault


def test_the_last_report_lost_in_an_outage_is_sent_again_once_the_server_is_back() -> None:
    api = InMemoryApi()
    down: list[float] = []  # the server goes down, for 30 s, as the migration's last report is sent

    def fault(call: Call, t: float) -> Outcome | None:
        if not down and call.endpoint == "progress" and call.body["subtask_name"] == "DETTACH_AGENT_IMAGE":
            if call.body["progress"] == 100:
                down.append(t)
        return DOWN if down and t < down[0] + 30 else None

    d, task_id = _started(api, 11, fault=fault)
    d.run_until(200)
    assert down and d.agent.stats.migrations_done == 1  # the agent finished while the server was down
    failed = [t for t, c, o in d.calls_to("progress") if not o.ok]
    assert len(failed) >= SPEC.retry.attempts()  # every try of the last report failed ...
    assert _state(api, task_id) is TaskState.MIGRATE_SUCCESS  # ... and the server has it all the same
    assert d.agent.stats.resent >= 1
    last = [(t, c) for t, c, o in d.calls_to("progress") if o.ok][-1]
    assert last[0] >= down[0] + 30 and (last[1].body["subtask_name"], last[1].body["progress"]) == (
        "DETTACH_AGENT_IMAGE",
        100,
    )


def test_a_failure_report_lost_in_an_outage_still_fails_the_task() -> None:
    api = InMemoryApi()
    spec = replace(SPEC, failure_probability=1.0)
    d, task_id = _started(api, 12, spec=spec)
    d.run_until(1 + 4 + TRANSFER_S + 5)
    assert _state(api, task_id) is TaskState.MIGRATE_FAIL  # without a fault: reported at once
    api2 = InMemoryApi()
    refused, fault = _down_for("command_result", 0, 1 + 4 + TRANSFER_S + 20)
    d2, task2 = _started(api2, 12, spec=spec, fault=fault)
    d2.run_until(1 + 4 + TRANSFER_S + 10)
    assert _state(api2, task2) is TaskState.RUNNING and refused
    d2.run_until(1 + 4 + TRANSFER_S + 40)
    assert _state(api2, task2) is TaskState.MIGRATE_FAIL
    fails = [o for _, c, o in d2.calls_to("command_result") if c.body["result"] == "fail"]
    assert fails[-1].ok and all(not o.ok for o in fails[:-1])


def test_a_newer_report_supersedes_the_unsent_one_and_a_4xx_drops_it() -> None:
    api = InMemoryApi()
    refused, fault = _down_for("progress", 20, 24)
    d, task_id = _started(api, 13, fault=fault)
    d.run_until(60)
    # Reports failed in the window; the next report, with newer progress, took their place.
    assert refused
    sent_after = [c.body["progress"] for t, c, o in d.calls_to("progress") if t >= 24 and o.ok]
    assert sent_after == sorted(sent_after)  # never an older state after a newer one
    assert d.agent.stats.resent == 0  # superseded before the next poll: nothing to re-send
    # A report the server refuses for good (the task was stopped and deleted meanwhile) is not kept.
    api.cp.act("default", task_id, Action.STOP, d.t)
    d.run_until(70)
    assert d.agent._unsent is None


def test_a_restarted_agent_registers_again_with_its_id_and_resumes_its_migration() -> None:
    api = InMemoryApi()
    spec = replace(SPEC, restarts=((40.0, 5.0),))
    d = Driver(Agent(spec, random.Random(14)), api)
    d.run_until(1)
    source_id = d.agent.source_id
    task_id = _task(api, source_id)
    api.cp.act("default", task_id, Action.START, d.t)
    d.run_until(200)
    registrations = d.calls_to("register")
    assert len(registrations) == 2 and registrations[1][1].body["id"] == source_id
    assert registrations[1][0] >= 45.0  # down for 5 s from t = 40: nothing sent meanwhile
    assert not [t for t, _, _ in d.calls if 40.0 < t < 45.0]
    assert d.agent.source_id == source_id and d.agent.stats.restarts == 1
    # It asked where the task stands and went on from there, not from the start.
    views = [t for t, _, _ in d.calls_to("get_task")]
    assert len(views) == 2 and views[1] >= 45.0
    transfer = [
        c.body["progress"] for t, c, _ in d.calls_to("progress") if c.body["subtask_name"] == "MIGRATE_LINUX_FILE"
    ]
    resumed = [p for t, c, _ in d.calls_to("progress") if t >= 45.0 for p in [c.body["progress"]]]
    assert resumed and resumed[0] > 0 and transfer == sorted(transfer)
    assert _state(api, task_id) is TaskState.MIGRATE_SUCCESS
    assert d.agent.violations == []
