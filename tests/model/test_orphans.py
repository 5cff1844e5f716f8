"""Tasks whose agent is gone: a STOP or DELETE completes after the disconnect timeout; source states.

Stepped with explicit times over every store. Before, a STOP or DELETE of a task whose agent
had gone stayed ABORTING or DELETING for good, and its source refused new tasks (SMS.9806).
"""

from __future__ import annotations

import pytest

from sim.model.api import ApiCore
from sim.model.commands import CommandName
from sim.model.controlplane import ControlPlane, Registration, TaskSpec
from sim.model.errors import IllegalTransition, NotFound, SourceBusy
from sim.model.intents import Call
from sim.model.lifecycle import Action, OsType, TaskState, TaskType
from sim.model.liveness import Liveness, LivenessWrite
from sim.model.store import MemoryStore, Store

P = "proj"
GONE_AFTER = 90.0
LIVENESS = Liveness(LivenessWrite.EVERY_POLL, disconnect_after_s=GONE_AFTER)


def _running(store: Store) -> tuple[ControlPlane, str, str]:
    """A task RUNNING on a source whose agent last polled at t=10."""
    cp = ControlPlane(store, liveness=LIVENESS)
    sid = cp.register(P, Registration(name="web-1", os_type=OsType.LINUX), 0.0)
    tid = cp.create_task(P, TaskSpec(name="t", type=TaskType.MIGRATE_FILE, source_id=sid), 1.0)
    cp.act(P, tid, Action.START, 2.0)
    assert cp.poll(P, sid, 10.0) is not None
    cp.report_result(P, sid, CommandName.START, True, 10.0)
    return cp, sid, tid


def test_stop_of_a_connected_agent_waits_for_its_acknowledgement(store: Store) -> None:
    cp, sid, tid = _running(store)
    cp.act(P, tid, Action.STOP, 20.0)
    assert cp.get_task(P, tid).state is TaskState.ABORTING
    with pytest.raises(IllegalTransition):  # SMS.2015: cannot delete a stopping task
        cp.act(P, tid, Action.DELETE, 30.0)
    assert cp.get_task(P, tid).state is TaskState.ABORTING


def test_stop_then_delete_of_a_gone_agent_completes_after_the_timeout(store: Store) -> None:
    cp, sid, tid = _running(store)
    cp.act(P, tid, Action.STOP, 20.0)  # the agent is still counted connected: the STOP waits
    assert cp.get_task(P, tid).state is TaskState.ABORTING
    later = 10.0 + GONE_AFTER + 1  # silent since t=10: disconnected now
    cp.act(P, tid, Action.DELETE, later)  # the STOP completes first, then the DELETE at once
    with pytest.raises(NotFound):
        cp.get_task(P, tid)
    commands = {c.name: c for c in store.commands() if c.task_id == tid}
    assert commands[CommandName.STOP].result == "expired" and commands[CommandName.DELETE].result == "expired"
    assert commands[CommandName.STOP].delivered_at is None
    new = cp.create_task(P, TaskSpec(name="again", type=TaskType.MIGRATE_FILE, source_id=sid), later + 1)
    assert cp.get_task(P, new).state is TaskState.READY


def test_another_projects_action_does_not_settle_a_stuck_stop(store: Store) -> None:
    cp, sid, tid = _running(store)
    cp.act(P, tid, Action.STOP, 20.0)
    later = 10.0 + GONE_AFTER + 1
    for action in (Action.START, Action.DELETE, Action.STOP):
        with pytest.raises(NotFound):  # another project: as if the task did not exist, and nothing moves
            cp.act("other", tid, action, later)
    assert cp.get_task(P, tid).state is TaskState.ABORTING
    assert [c.result for c in store.commands() if c.name is CommandName.STOP] == [None]


def test_a_new_task_on_a_source_with_a_stuck_stop_is_accepted_after_the_timeout(store: Store) -> None:
    cp, sid, tid = _running(store)
    cp.act(P, tid, Action.STOP, 20.0)
    with pytest.raises(SourceBusy):
        cp.create_task(P, TaskSpec(name="x", type=TaskType.MIGRATE_FILE, source_id=sid), 30.0)
    late = 10.0 + GONE_AFTER + 1
    with pytest.raises(SourceBusy):  # ABORT: stopped, still the source's task
        cp.create_task(P, TaskSpec(name="x", type=TaskType.MIGRATE_FILE, source_id=sid), late)
    assert cp.get_task(P, tid).state is TaskState.ABORT


def test_a_stop_after_the_agent_went_is_done_at_once(store: Store) -> None:
    cp, sid, tid = _running(store)
    cp.act(P, tid, Action.STOP, 10.0 + GONE_AFTER + 5)
    assert cp.get_task(P, tid).state is TaskState.ABORT


def test_the_source_state_follows_its_task() -> None:
    core = ApiCore(ControlPlane(MemoryStore()))
    reg = {"name": "s", "os_type": "LINUX", "ip": "10.0.0.1"}
    sid = core.handle(Call("register", body=reg), P, 0.0)[1]["id"]

    def state(now: float) -> str:
        return core.handle(Call("get_source", source_id=sid), P, now)[1]["state"]

    assert state(0.0) == "waiting"
    tid = core.handle(
        Call("create_task", body={"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": sid}}), P, 1.0
    )[1]["id"]
    assert state(1.0) == "waiting"
    core.handle(Call("action", task_id=tid, body={"operation": "start"}), P, 2.0)
    assert state(2.0) == "replicate"
    core.handle(Call("poll", source_id=sid), P, 3.0)
    core.handle(
        Call("command_result", source_id=sid, body={"command_name": "START", "result": "success", "result_detail": {}}),
        P,
        3.0,
    )
    core.handle(Call("action", task_id=tid, body={"operation": "stop"}), P, 4.0)
    assert state(4.0) == "stopping"
    core.handle(Call("poll", source_id=sid), P, 5.0)
    core.handle(
        Call("command_result", source_id=sid, body={"command_name": "STOP", "result": "success", "result_detail": {}}),
        P,
        5.0,
    )
    assert state(5.0) == "stopped"
    listed = core.handle(Call("list_sources"), P, 5.0)[1]["source_servers"]
    assert [s["state"] for s in listed] == ["stopped"]
