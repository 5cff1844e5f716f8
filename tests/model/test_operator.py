"""The operator model stepped by hand against the control plane in memory; agents' reports made directly."""

from __future__ import annotations

import random
from dataclasses import replace

from sim.model.api import InMemoryApi
from sim.model.commands import CommandName
from sim.model.controlplane import Progress, Registration
from sim.model.intents import Call, Outcome, Sleep
from sim.model.lifecycle import OsType, Phase, TaskState, subtask_sequence
from sim.model.operator import Operator, OperatorSpec

SPEC = OperatorSpec(
    waves=((1.0, 2),), check_interval_s=1.0, sync_after_s=2.0, log_collect_probability=0.0, delete_at_end=True
)


class Driver:
    def __init__(self, op: Operator, api: InMemoryApi) -> None:
        self.op, self.api, self.t = op, api, 0.0
        self.gen = op.run()
        self.intent = next(self.gen)
        self.calls: list[tuple[float, Call, Outcome]] = []

    def run_until(self, t_end: float) -> None:
        while self.t < t_end:
            if isinstance(self.intent, Sleep):
                self.t += self.intent.seconds
                self.intent = self.gen.send(None)
            else:
                outcome = self.api.handle(self.intent, self.t)
                self.calls.append((self.t, self.intent, outcome))
                self.intent = self.gen.send(outcome)

    def operations(self) -> list[str]:
        return [
            c.body["operation"] if c.endpoint == "action" else c.endpoint
            for _, c, o in self.calls
            if o.ok and c.endpoint in ("action", "collect_log", "delete_task", "create_task")
        ]


def _sources(api: InMemoryApi, n: int, os_type: OsType = OsType.LINUX) -> list[str]:
    return [api.cp.register("default", Registration(name=f"s{i}", os_type=os_type), 0.0) for i in range(n)]


def _agent_finishes(api: InMemoryApi, source_id: str, t: float) -> None:
    """What an agent does with its pending command: acknowledge it and, for START/SYNC, run to 100."""
    command = api.cp.poll("default", source_id, t)
    assert command is not None
    api.cp.report_result("default", source_id, command.name, True, t)
    if command.name in (CommandName.START, CommandName.SYNC):
        task = api.cp.get_task("default", command.task_id)
        phase = Phase.MIGRATE if command.name is CommandName.START else Phase.SYNC
        for name in subtask_sequence(task.type, task.os_type, phase):
            api.cp.report_progress("default", task.id, Progress(name, 100), t)


def test_waves_create_and_start_tasks_on_free_sources() -> None:
    api = InMemoryApi()
    sources = _sources(api, 3)
    d = Driver(Operator(SPEC, random.Random(1)), api)
    d.run_until(1.5)
    assert d.operations() == ["create_task", "start", "create_task", "start"]
    count, tasks = api.cp.list_tasks("default")
    assert count == 2 and {t.state for t in tasks} == {TaskState.RUNNING}
    assert {t.source_id for t in tasks} < set(sources)


def test_a_task_goes_through_sync_and_delete() -> None:
    api = InMemoryApi()
    source = _sources(api, 1)[0]
    d = Driver(Operator(replace(SPEC, waves=((1.0, 1),)), random.Random(2)), api)
    d.run_until(1.5)
    _agent_finishes(api, source, d.t)  # START -> MIGRATE_SUCCESS
    d.run_until(3.0)
    assert "sync" not in d.operations()  # sync_after_s has not passed
    d.run_until(6.0)
    assert d.operations()[-1] == "sync"
    _agent_finishes(api, source, d.t)  # SYNC -> SYNC_SUCCESS
    d.run_until(8.0)
    assert d.operations()[-1] == "delete_task"
    _agent_finishes(api, source, d.t)  # DELETE acknowledged: gone
    d.run_until(10.0)
    assert d.op.finished and not d.op.plans and d.op.stats.deleted == 1


def test_stop_then_resume_after_the_pause() -> None:
    api = InMemoryApi()
    source = _sources(api, 1)[0]
    d = Driver(
        Operator(replace(SPEC, waves=((1.0, 1),), stop_probability=1.0, resume_after_s=3.0), random.Random(3)), api
    )
    d.run_until(2.5)
    assert d.operations() == ["create_task", "start", "stop"]
    api.cp.report_result("default", source, CommandName.START, True, d.t)
    api.cp.report_result("default", source, CommandName.STOP, True, d.t)  # -> ABORT
    d.run_until(4.0)
    assert d.operations()[-1] == "stop"  # not yet: resume_after_s
    d.run_until(7.0)
    assert d.operations()[-1] == "start"
    task = api.cp.list_tasks("default")[1][0]
    assert task.state is TaskState.RUNNING


def test_failed_migration_is_restarted_then_given_up() -> None:
    api = InMemoryApi()
    source = _sources(api, 1)[0]
    d = Driver(Operator(replace(SPEC, waves=((1.0, 1),), max_restarts=1), random.Random(4)), api)
    d.run_until(1.5)
    api.cp.report_result("default", source, CommandName.START, False, d.t)  # -> MIGRATE_FAIL
    d.run_until(3.0)
    assert d.operations()[-1] == "restart"
    api.cp.report_result("default", source, CommandName.START, False, d.t)
    d.run_until(5.0)
    assert d.operations()[-1] == "delete_task"  # one restart allowed, then the task is removed


def test_windows_sources_get_block_level_tasks() -> None:
    api = InMemoryApi()
    _sources(api, 2, OsType.WINDOWS)
    d = Driver(Operator(replace(SPEC, linux_block_fraction=0.0), random.Random(5)), api)
    d.run_until(1.5)
    assert {c.body["type"] for _, c, _ in d.calls if c.endpoint == "create_task"} == {"MIGRATE_BLOCK"}


def test_the_operator_acts_only_on_sources_named_with_its_prefix() -> None:
    """A shared server: nobody's test, an earlier run's leftovers, and the run's own sources."""
    api = InMemoryApi()
    names = ["team-b-host-1", "run-old-agent-0000000", "run-new-agent-0000000", "run-old-agent-0000001"]
    names.append("run-new-agent-0000001")
    ids = {n: api.cp.register("default", Registration(name=n, os_type=OsType.LINUX), 0.0) for n in names}
    own = {ids[n] for n in names if n.startswith("run-new-")}
    d = Driver(Operator(replace(SPEC, waves=((1.0, 5),), source_prefix="run-new-"), random.Random(0)), api)
    d.run_until(1.5)
    created = [c.body for _, c, o in d.calls if c.endpoint == "create_task" and o.ok]
    assert all(b["name"].startswith("run-new-migrate-") for b in created)
    _, tasks = api.cp.list_tasks("default")
    assert {t.source_id for t in tasks} == own  # 5 wanted, 2 of its own: only those, none of the others
    assert len(tasks) == 2
