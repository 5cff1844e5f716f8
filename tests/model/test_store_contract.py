"""The store contract, run against every store (memory, SQLite, PostgreSQL) by the `store` fixture.

First the `Tx` operations themselves, then the control plane over each store: the same
requests must give the same answers and leave the same records whichever store keeps them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from sim.model.commands import Command, CommandName
from sim.model.controlplane import ControlPlane, Progress, Registration, TaskSpec
from sim.model.entities import CommandRecord, Source, Subtask, Task, TaskEvent
from sim.model.errors import CommandMismatch, NotFound, SmsError, SourceNotFound
from sim.model.lifecycle import (
    Action,
    LogCollectStatus,
    OsType,
    Phase,
    TaskState,
    TaskType,
    subtask_sequence,
)
from sim.model.store import MemoryStore, Store

P = "proj-a"


def _source(i: int, project: str = P, connected: bool = True, name: str | None = None) -> Source:
    return Source(
        id=f"s{i}",
        project_id=project,
        name=name or f"host-{i}",
        os_type=OsType.LINUX,
        registered_at=100.0 + i,
        connected=connected,
        extra={"cpu": i, "tags": ["a", "b"]},
    )


def _task(i: int, source_id: str, project: str = P, state: TaskState = TaskState.READY) -> Task:
    return Task(
        id=f"t{i}",
        project_id=project,
        name=f"task-{i % 2}",
        type=TaskType.MIGRATE_FILE,
        os_type=OsType.LINUX,
        source_id=source_id,
        create_date=200.0 + i,
        state=state,
        sub_tasks=[Subtask(1, "CREATE_CLOUD_SERVER", 40, 201.5)],
        migrate_speed=1.25,
    )


def _command(source_id: str, task_id: str, name: CommandName, t: float) -> CommandRecord:
    return CommandRecord(source_id=source_id, task_id=task_id, name=name, param={"task_id": task_id}, enqueued_at=t)


def _reopen(store: Store) -> Store:
    """A second store object over the same file or schema (memory has none: it is not persistent)."""
    if isinstance(store, MemoryStore):
        pytest.skip("MemoryStore is not persistent")
    return type(store)(getattr(store, "path", None) or store.url)  # type: ignore[call-arg, attr-defined]


# -- the Tx contract ------------------------------------------------------------------------------


def test_source_insert_get_update(store: Store) -> None:
    with store.write() as tx:
        tx.insert_source(_source(1))
        tx.insert_source(_source(2, project="proj-b", connected=False))
    with store.read() as tx:
        assert tx.get_source("s1").to_doc() == _source(1).to_doc()
        assert tx.source_brief("s1") == ("proj-a", True, None)
        assert tx.source_brief("s2") == ("proj-b", False, None)
        assert tx.source_brief("nope") is None and tx.get_source("nope") is None
    with store.write() as tx:
        src = tx.get_source("s1", lock=True)
        src.connected, src.name, src.current_task_id, src.last_visit_time = False, "renamed", "t9", 123.5
        tx.update_source(src)
    with store.read() as tx:
        assert tx.get_source("s1").to_doc() == {
            **_source(1).to_doc(),
            "connected": False,
            "name": "renamed",
            "current_task_id": "t9",
            "last_visit_time": 123.5,
        }
        assert tx.source_brief("s1") == ("proj-a", False, 123.5)


def test_touch_source_records_a_visit_and_changes_nothing_else(store: Store) -> None:
    with store.write() as tx:
        tx.insert_source(_source(1, connected=False))
        tx.insert_source(_source(2))
    before = _source(1).to_doc()
    with store.write() as tx:
        tx.touch_source("s1", 50.0)
        tx.touch_source("no-such-source", 50.0)  # nothing to record, and no error
    with store.read() as tx:
        assert tx.source_brief("s1") == (P, True, 50.0)
        assert tx.get_source("s1").to_doc() == {**before, "connected": True, "last_visit_time": 50.0}
        assert tx.get_source("s2").last_visit_time is None
    with store.write() as tx:
        tx.touch_source("s1", 40.0)  # a slower request that began earlier never moves the visit back
    with store.read() as tx:
        assert tx.source_brief("s1") == (P, True, 50.0)
    with store.write() as tx:
        tx.touch_source("s1", 60.0)
    with store.read() as tx:
        assert tx.source_brief("s1") == (P, True, 60.0)
        assert [s.last_visit_time for s in tx.list_sources(P)[1]] == [60.0, None]
    with store.write() as tx:  # a whole-record update writes the visit columns too
        src = tx.get_source("s1", lock=True)
        src.connected, src.last_visit_time, src.name = False, 70.0, "renamed"
        tx.update_source(src)
    with store.read() as tx:
        assert tx.source_brief("s1") == (P, False, 70.0) and tx.get_source("s1").name == "renamed"


def test_list_sources_connected_since(store: Store) -> None:
    """`connected` with `seen_since`: connected when last seen, and seen at or after it."""
    with store.write() as tx:
        for i, (connected, seen) in enumerate([(True, 10.0), (True, 20.0), (False, 30.0), (True, None), (True, 25.0)]):
            tx.insert_source(dataclasses.replace(_source(i, connected=connected), last_visit_time=seen))
    with store.read() as tx:
        assert [s.id for s in tx.list_sources(P, connected=True, seen_since=20.0)[1]] == ["s1", "s4"]
        assert [s.id for s in tx.list_sources(P, connected=False, seen_since=20.0)[1]] == ["s0", "s2", "s3"]
        total, page = tx.list_sources(P, connected=False, seen_since=20.0, limit=2, offset=1)
        assert total == 3 and [s.id for s in page] == ["s2", "s3"]
        assert [s.id for s in tx.list_sources(P, connected=True)[1]] == ["s0", "s1", "s3", "s4"]  # as stored
        assert tx.list_sources(P, seen_since=20.0)[0] == 5  # no `connected` filter: every source
        # The sources come back as stored: the caller decides what `connected` means now.
        assert [s.connected for s in tx.list_sources(P, connected=False, seen_since=20.0)[1]] == [True, False, True]


def test_list_sources_filters_and_paging(store: Store) -> None:
    with store.write() as tx:
        for i in (3, 1, 4, 0, 2):  # inserted out of order: listings are by registration time
            tx.insert_source(_source(i, connected=i % 2 == 0, name="twin" if i in (1, 4) else None))
        tx.insert_source(_source(9, project="proj-b"))
    with store.read() as tx:
        total, page = tx.list_sources(P)
        assert total == 5 and [s.id for s in page] == ["s0", "s1", "s2", "s3", "s4"]
        total, page = tx.list_sources(P, limit=2, offset=2)
        assert total == 5 and [s.id for s in page] == ["s2", "s3"]
        assert [s.id for s in tx.list_sources(P, limit=0)[1]] == ["s0", "s1", "s2", "s3", "s4"]  # 0: default
        assert [s.id for s in tx.list_sources(P, name="twin")[1]] == ["s1", "s4"]
        assert [s.id for s in tx.list_sources(P, connected=True)[1]] == ["s0", "s2", "s4"]
        assert [s.id for s in tx.list_sources(P, connected=False, name="twin")[1]] == ["s1"]
        assert tx.list_sources("proj-c") == (0, [])


def test_task_insert_get_update_list_delete(store: Store) -> None:
    with store.write() as tx:
        tx.insert_source(_source(1))
        for i in (2, 0, 1, 3):
            tx.insert_task(_task(i, "s1" if i < 3 else "s2", state=TaskState.RUNNING if i == 1 else TaskState.READY))
        tx.insert_task(_task(7, "s7", project="proj-b"))
    with store.read() as tx:
        assert tx.get_task("t0").to_doc() == _task(0, "s1").to_doc()
        assert tx.get_task("nope") is None
        assert [t.id for t in tx.list_tasks(P)[1]] == ["t0", "t1", "t2", "t3"]
        assert tx.list_tasks(P, state="READY")[0] == 3
        assert [t.id for t in tx.list_tasks(P, state=TaskState.RUNNING)[1]] == ["t1"]
        assert [t.id for t in tx.list_tasks(P, name="task-1")[1]] == ["t1", "t3"]
        assert [t.id for t in tx.list_tasks(P, source_id="s2")[1]] == ["t3"]
        total, page = tx.list_tasks(P, limit=3, offset=2)
        assert total == 4 and [t.id for t in page] == ["t2", "t3"]
    with store.write() as tx:
        task = tx.get_task("t0", lock=True)
        task.state, task.phase, task.prev_state = TaskState.ABORTING, Phase.SYNC, TaskState.RUNNING
        task.log_collect_status, task.sub_tasks[0].progress = LogCollectStatus.UPLOADING, 100
        tx.update_task(task)
        tx.delete_task("t2")
    with store.read() as tx:
        assert tx.get_task("t0").to_doc() == task.to_doc()
        assert [t.id for t in tx.list_tasks(P, state="ABORTING")[1]] == ["t0"]
        assert tx.get_task("t2") is None and tx.list_tasks(P)[0] == 3


def test_commands_are_fifo_per_source_and_acknowledged_ones_leave_the_queue(store: Store) -> None:
    with store.write() as tx:
        a1 = _command("sa", "ta", CommandName.START, 1.0)
        b1 = _command("sb", "tb", CommandName.START, 2.0)
        a2 = _command("sa", "ta", CommandName.STOP, 3.0)
        a3 = CommandRecord("sa", "ta", CommandName.UPLOAD_LOG, {"bucket": "bk", "object": "o/1.tgz"}, 4.0)
        seqs = [tx.add_command(c) for c in (a1, b1, a2, a3)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4 and [a1.seq, b1.seq, a2.seq, a3.seq] == seqs
    with store.read() as tx:
        assert tx.head_command("sa") == a1 and tx.head_command("sb") == b1 and tx.head_command("sc") is None
    with store.write() as tx:  # delivery keeps it at the head; acknowledgement removes it
        head = tx.head_command("sa")
        head.delivered_at = 5.0
        tx.update_command(head)
    with store.read() as tx:
        assert tx.head_command("sa") == dataclasses.replace(a1, delivered_at=5.0)
    with store.write() as tx:
        head = tx.head_command("sa")
        head.acked_at, head.result = 6.0, "success"
        tx.update_command(head)
    with store.read() as tx:
        assert tx.head_command("sa") == a2
    with store.write() as tx:
        head = tx.head_command("sa")
        head.delivered_at, head.acked_at, head.result = 7.0, 7.5, "fail"
        tx.update_command(head)
        assert tx.head_command("sa") == a3  # seen inside the same transaction too
        assert tx.head_command("sa").command() == Command(CommandName.UPLOAD_LOG, bucket="bk", object="o/1.tgz")
    history = store.commands()
    assert [c.seq for c in history] == seqs
    assert store.pending_commands() == 2  # b1 and a3
    assert [(c.name, c.delivered_at, c.acked_at, c.result) for c in history] == [
        (CommandName.START, 5.0, 6.0, "success"),
        (CommandName.START, None, None, None),
        (CommandName.STOP, 7.0, 7.5, "fail"),
        (CommandName.UPLOAD_LOG, None, None, None),
    ]
    assert history[1].param == {"task_id": "tb"} and history[3].param == {"bucket": "bk", "object": "o/1.tgz"}


def test_seq_keeps_increasing_across_transactions(store: Store) -> None:
    seqs = []
    for i in range(5):
        with store.write() as tx:
            seqs.append(tx.add_command(_command(f"s{i % 2}", "t", CommandName.SYNC, float(i))))
    assert seqs == sorted(set(seqs))


def test_events_are_kept_in_order(store: Store) -> None:
    events = [
        TaskEvent(float(10 - i), f"t{i % 3}", "s1", "READY", "RUNNING", "start", "SSL_CONFIG", i) for i in range(7)
    ]  # times deliberately not increasing: order is insertion order
    for chunk in (events[:3], events[3:]):
        with store.write() as tx:
            for event in chunk:
                tx.add_event(event)
    assert store.events() == events


def test_write_rolls_back_on_exception(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("MemoryStore.write() does not roll back by design; the control plane checks before it changes")
    with store.write() as tx:
        tx.insert_source(_source(1))
    with pytest.raises(RuntimeError), store.write() as tx:
        src = tx.get_source("s1", lock=True)
        src.name = "changed"
        tx.update_source(src)
        tx.insert_source(_source(2))
        tx.insert_task(_task(1, "s1"))
        tx.add_command(_command("s1", "t1", CommandName.START, 1.0))
        tx.add_event(TaskEvent(1.0, "t1", "s1", "", "READY", "create"))
        raise RuntimeError("rejected half-way")
    with store.read() as tx:
        assert tx.get_source("s1").name == "host-1" and tx.get_source("s2") is None
        assert tx.get_task("t1") is None and tx.head_command("s1") is None
    assert store.commands() == [] and store.events() == []
    with store.write() as tx:  # and the store is usable afterwards
        tx.insert_source(_source(2))
    with store.read() as tx:
        assert tx.source_brief("s2") == (P, True, None)


def test_a_new_store_object_sees_the_data(store: Store) -> None:
    cp = ControlPlane(store)
    sid = cp.register(P, Registration(name="h", os_type=OsType.LINUX), 1.0)
    tid = cp.create_task(P, TaskSpec(name="m", type=TaskType.MIGRATE_BLOCK, source_id=sid), 2.0)
    cp.act(P, tid, Action.START, 3.0)
    store.close()
    again = _reopen(store)
    try:
        cp2 = ControlPlane(again)
        assert cp2.get_task(P, tid).state is TaskState.RUNNING
        assert cp2.poll(P, sid, 4.0) == Command(CommandName.START, task_id=tid)
        assert [c.name for c in again.commands()] == [CommandName.START]
        assert [e.to_state for e in again.events()] == ["READY", "RUNNING"]
    finally:
        again.close()


# -- the control plane over every store ----------------------------------------------------------


class Clock:
    """Request times: every call is one second after the previous."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def now() -> Clock:
    return Clock()


def _running_task(cp: ControlPlane, now: Clock, project: str = P) -> tuple[str, str]:
    """A registered source with a started task whose START has been acknowledged."""
    sid = cp.register(project, Registration(name="web-1", os_type=OsType.LINUX, total_bytes=10**9), now())
    tid = cp.create_task(project, TaskSpec(name="mig", type=TaskType.MIGRATE_FILE, source_id=sid), now())
    cp.act(project, tid, Action.START, now())
    assert cp.poll(project, sid, now()) == Command(CommandName.START, task_id=tid)
    cp.report_result(project, sid, CommandName.START, True, now())
    return sid, tid


def _finish(cp: ControlPlane, tid: str, now: Clock, phase: Phase = Phase.MIGRATE) -> TaskState:
    state = TaskState.RUNNING
    for name in subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, phase):
        for progress in (50, 100):
            state = cp.report_progress(P, tid, Progress(subtask_name=name, progress=progress), now())
    return state


def _ack(cp: ControlPlane, sid: str, expected: Command, now: Clock) -> None:
    assert cp.poll(P, sid, now()) == expected
    cp.report_result(P, sid, expected.name, True, now())
    assert cp.poll(P, sid, now()) is None


def test_start_is_delivered_until_acknowledged(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid = cp.register(P, Registration(name="web-1", os_type=OsType.LINUX), now())
    assert cp.poll(P, sid, now()) is None
    tid = cp.create_task(P, TaskSpec(name="mig", type=TaskType.MIGRATE_FILE, source_id=sid), now())
    assert cp.poll(P, sid, now()) is None and cp.get_task(P, tid).state is TaskState.READY
    cp.act(P, tid, Action.START, now())
    for _ in range(3):
        assert cp.poll(P, sid, now()) == Command(CommandName.START, task_id=tid)
    cp.report_result(P, sid, CommandName.START, True, now())
    assert cp.poll(P, sid, now()) is None and cp.poll(P, sid, now()) is None
    assert cp.get_task(P, tid).state is TaskState.RUNNING


def test_progress_through_every_subtask_completes_the_migration(control_plane: ControlPlane, now: Clock) -> None:
    sid, tid = _running_task(control_plane, now)
    assert _finish(control_plane, tid, now) is TaskState.MIGRATE_SUCCESS
    task = control_plane.get_task(P, tid)
    assert all(s.progress == 100 and s.end_date is not None for s in task.sub_tasks)
    assert task.finish_date is not None and control_plane.store.events()[-1].trigger == "progress:last-subtask-100"


def test_sync_after_migration(control_plane: ControlPlane, now: Clock) -> None:
    sid, tid = _running_task(control_plane, now)
    _finish(control_plane, tid, now)
    control_plane.act(P, tid, Action.SYNC, now())
    assert control_plane.get_task(P, tid).state is TaskState.SYNCING
    _ack(control_plane, sid, Command(CommandName.SYNC, task_id=tid), now)
    assert _finish(control_plane, tid, now, Phase.SYNC) is TaskState.SYNC_SUCCESS


def test_log_collection(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid, tid = _running_task(cp, now)
    cp.act(P, tid, Action.COLLECT_LOG, now(), log_bucket="logs-bucket")
    assert cp.get_task(P, tid).log_collect_status is LogCollectStatus.INIT
    command = cp.poll(P, sid, now())
    assert command is not None and command.name is CommandName.UPLOAD_LOG and command.bucket == "logs-bucket"
    assert command.object and tid in command.object
    assert cp.get_task(P, tid).log_collect_status is LogCollectStatus.UPLOADING
    _ack(cp, sid, command, now)
    assert cp.get_task(P, tid).log_collect_status is LogCollectStatus.UPLOADED
    assert cp.get_task(P, tid).state is TaskState.RUNNING


def test_a_running_task_cannot_be_deleted(control_plane: ControlPlane, now: Clock) -> None:
    _, tid = _running_task(control_plane, now)
    with pytest.raises(SmsError) as exc:
        control_plane.act(P, tid, Action.DELETE, now())
    assert exc.value.code == "SMS.2015"


def test_deleting_a_finished_task(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid, tid = _running_task(cp, now)
    _finish(cp, tid, now)
    cp.act(P, tid, Action.DELETE, now())
    assert cp.get_task(P, tid).state is TaskState.DELETING
    _ack(cp, sid, Command(CommandName.DELETE, task_id=tid), now)
    with pytest.raises(NotFound):
        cp.get_task(P, tid)
    assert cp.list_tasks(P) == (0, []) and cp.get_source(P, sid)[1] is None
    assert cp.store.events()[-1].to_state == "DELETED"
    # The source is free for a new task.
    cp.create_task(P, TaskSpec(name="again", type=TaskType.MIGRATE_FILE, source_id=sid), now())


def test_a_result_for_a_command_that_is_not_the_head_is_2009(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid = cp.register(P, Registration(name="web-1", os_type=OsType.LINUX), now())
    with pytest.raises(CommandMismatch) as exc:  # nothing pending
        cp.report_result(P, sid, CommandName.START, True, now())
    assert exc.value.code == "SMS.2009"
    tid = cp.create_task(P, TaskSpec(name="mig", type=TaskType.MIGRATE_FILE, source_id=sid), now())
    cp.act(P, tid, Action.START, now())
    cp.act(P, tid, Action.STOP, now())  # queued behind START
    with pytest.raises(CommandMismatch):
        cp.report_result(P, sid, CommandName.STOP, True, now())
    assert cp.poll(P, sid, now()) == Command(CommandName.START, task_id=tid)


def _snapshot(cp: ControlPlane, sid: str, tid: str) -> tuple[Any, ...]:
    """Everything a request could change, copied (the memory store hands out live records)."""
    src, task = cp.get_source(P, sid)
    return (
        src.to_doc(),
        task.to_doc() if task else None,
        [dataclasses.asdict(c) for c in cp.store.commands()],
        cp.store.events(),
    )


def _rejected_requests(cp: ControlPlane, sid: str, tid: str, now: Clock) -> Iterator[Any]:
    yield lambda: cp.act(P, tid, Action.START, now())  # SMS.1039: already running
    yield lambda: cp.act(P, tid, Action.DELETE, now())  # SMS.2015
    yield lambda: cp.act(P, tid, Action.RESTART, now())  # SMS.1040
    yield lambda: cp.act(P, tid, Action.COLLECT_LOG, now())  # no bucket
    yield lambda: cp.act(P, tid, Action.COLLECT_LOG, now(), log_bucket="b")  # already collecting
    yield lambda: cp.report_result(P, sid, CommandName.DELETE, True, now())  # SMS.2009: UPLOAD_LOG is the head
    yield lambda: cp.report_progress(P, tid, Progress(subtask_name="CREATE_CLOUD_SERVER", progress=10), now())
    yield lambda: cp.report_progress(P, tid, Progress(subtask_name="NO_SUCH_SUBTASK", progress=10), now())
    yield lambda: cp.report_progress(P, tid, Progress(subtask_name="SSL_CONFIG", progress=101), now())
    yield lambda: cp.report_progress("proj-b", tid, Progress(subtask_name="SSL_CONFIG", progress=90), now())
    yield lambda: cp.create_task(P, TaskSpec(name="x", type=TaskType.MIGRATE_FILE, source_id=sid), now())


def test_a_rejected_request_changes_nothing(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid, tid = _running_task(cp, now)
    cp.report_progress(P, tid, Progress(subtask_name="ATTACH_AGENT_IMAGE", progress=60), now())
    cp.act(P, tid, Action.COLLECT_LOG, now(), log_bucket="b")
    cp.poll(P, sid, now())  # UPLOAD_LOG delivered, log collection UPLOADING
    for request in _rejected_requests(cp, sid, tid, now):
        before = _snapshot(cp, sid, tid)
        with pytest.raises(SmsError):
            request()
        assert _snapshot(cp, sid, tid) == before


def test_dispatch_times_are_recorded(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid, tid = _running_task(cp, now)
    cp.act(P, tid, Action.STOP, now())
    first = now()
    cp.poll(P, sid, first)
    cp.poll(P, sid, now())  # a second delivery does not move delivered_at
    cp.report_result(P, sid, CommandName.STOP, True, now())
    assert cp.get_task(P, tid).state is TaskState.ABORT
    start, stop = cp.store.commands()
    assert stop.name is CommandName.STOP and stop.delivered_at == first and stop.result == "success"
    for c in (start, stop):
        assert c.enqueued_at <= c.delivered_at <= c.acked_at


def test_another_projects_source_and_tasks_are_invisible(control_plane: ControlPlane, now: Clock) -> None:
    cp = control_plane
    sid, tid = _running_task(cp, now, project="proj-b")
    cp.register(P, Registration(name="mine", os_type=OsType.LINUX), now())
    with pytest.raises(NotFound):
        cp.poll(P, sid, now())
    with pytest.raises(NotFound):
        cp.get_source(P, sid)
    with pytest.raises(NotFound):
        cp.get_task(P, tid)
    with pytest.raises(NotFound):
        cp.act(P, tid, Action.STOP, now())
    with pytest.raises(NotFound):
        cp.report_result(P, sid, CommandName.START, True, now())
    with pytest.raises(SourceNotFound):
        cp.create_task(P, TaskSpec(name="steal", type=TaskType.MIGRATE_FILE, source_id=sid), now())
    assert cp.list_tasks(P) == (0, [])
    assert [s.name for s in cp.list_sources(P)[1]] == ["mine"]
    assert cp.list_tasks("proj-b")[0] == 1


def test_start_after_a_failed_delete_resumes_the_stopped_task(control_plane: ControlPlane, now: Clock) -> None:
    # Found with this suite: DELETING used to overwrite the state saved by ABORTING, so a resume
    # after a failed delete went "back" to ABORT and the task never ran again.
    cp = control_plane
    sid, tid = _running_task(cp, now)
    cp.act(P, tid, Action.STOP, now())
    _ack(cp, sid, Command(CommandName.STOP, task_id=tid), now)
    cp.act(P, tid, Action.DELETE, now())
    assert cp.poll(P, sid, now()) == Command(CommandName.DELETE, task_id=tid)
    cp.report_result(P, sid, CommandName.DELETE, False, now())
    assert cp.get_task(P, tid).state is TaskState.ABORT
    cp.act(P, tid, Action.START, now())
    assert cp.get_task(P, tid).state is TaskState.RUNNING
    assert cp.poll(P, sid, now()) == Command(CommandName.START, task_id=tid)
