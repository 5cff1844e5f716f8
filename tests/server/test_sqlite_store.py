"""SQLite store specifics: the pragmas it promises, the indexes the poll uses, processes sharing a file."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.model.commands import Command, CommandName
from sim.model.controlplane import ControlPlane, Registration, TaskSpec
from sim.model.entities import Source
from sim.model.lifecycle import Action, OsType, TaskState, TaskType
from sim.model.liveness import Liveness, LivenessWrite
from sim.server.stores import open_store
from sim.server.stores.sqlite import BUSY_TIMEOUT_MS, SqliteStore

P = "proj"
PER_PROCESS = 200


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "sms.db")
    yield store
    store.close()


def test_wal_normal_sync_and_busy_timeout_are_set(sqlite_store: SqliteStore) -> None:
    with sqlite_store.read() as tx:
        assert tx.query("PRAGMA journal_mode") == [("wal",)]
        assert tx.query("PRAGMA synchronous") == [(1,)]  # 1 = NORMAL
        assert tx.query("PRAGMA busy_timeout") == [(BUSY_TIMEOUT_MS,)]


@pytest.mark.parametrize(("option", "level"), [("?synchronous=full", 2), ("?synchronous=off", 0), ("", 1)])
def test_durability_is_selected_by_the_url(tmp_path: Path, option: str, level: int) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sms.db'}{option}")
    try:
        with store.read() as tx:
            assert tx.query("PRAGMA synchronous") == [(level,)]  # type: ignore[attr-defined]
    finally:
        store.close()


def test_an_unknown_sqlite_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        open_store(f"sqlite:///{tmp_path / 'sms.db'}?synchronous=sometimes")


def test_the_poll_lookups_are_single_index_searches(sqlite_store: SqliteStore) -> None:
    from sim.server.stores.sqlite import _BRIEF_AND_HEAD, _HEAD

    with sqlite_store.read() as tx:
        both = " ".join(str(r[-1]) for r in tx.query(f"EXPLAIN QUERY PLAN {_BRIEF_AND_HEAD}", ("s",)))
        head = " ".join(str(r[-1]) for r in tx.query(f"EXPLAIN QUERY PLAN {_HEAD}", ("s",)))
    assert "SEARCH s USING" in both and "(id=?)" in both and "INTEGER PRIMARY KEY (rowid=?)" in both
    assert "INDEX commands_pending" in both and "SCAN" not in both and "TEMP B-TREE" not in both
    assert "INDEX commands_pending" in head and "TEMP B-TREE" not in head  # no sort step


def test_the_head_fetched_with_the_brief_is_never_stale(sqlite_store: SqliteStore) -> None:
    cp = ControlPlane(sqlite_store)
    sid = cp.register(P, Registration(name="h", os_type=OsType.LINUX), 1.0)
    tid = cp.create_task(P, TaskSpec(name="t", type=TaskType.MIGRATE_BLOCK, source_id=sid), 1.0)
    with sqlite_store.read() as tx:
        assert tx.source_brief(sid) == (P, True, 1.0)  # fetches the (empty) head along
    cp.act(P, tid, Action.START, 2.0)
    with sqlite_store.read() as tx:  # a new block asks again
        assert tx.head_command(sid).command() == Command(CommandName.START, task_id=tid)
    with sqlite_store.write() as tx:  # a command written after the brief, in the same block
        assert tx.source_brief(sid) == (P, True, 1.0)
        head = tx.head_command(sid)
        head.acked_at = 3.0
        tx.update_command(head)
        tx.source_brief(sid)
        tx.add_command(dataclasses.replace(head, seq=0, acked_at=None, enqueued_at=4.0))
        assert tx.head_command(sid).enqueued_at == 4.0
    with sqlite_store.read() as tx:
        tx.source_brief("another")
        assert tx.head_command(sid).enqueued_at == 4.0  # another source's fetch is not used


def test_the_liveness_write_changes_two_columns_not_the_document(sqlite_store: SqliteStore) -> None:
    cp = ControlPlane(sqlite_store, liveness=Liveness(LivenessWrite.EVERY_POLL))
    sid = cp.register(P, Registration(name="h", os_type=OsType.LINUX), 1.0)
    with sqlite_store.read() as tx:
        (doc,) = tx.query("SELECT doc FROM sources WHERE id = ?", (sid,))[0]
    cp.poll(P, sid, 7.0)
    with sqlite_store.read() as tx:
        assert tx.query("SELECT doc, last_visit_time FROM sources WHERE id = ?", (sid,)) == [(doc, 7.0)]
    assert cp.get_source(P, sid, 7.0)[0].last_visit_time == 7.0


def test_a_database_from_before_the_liveness_column_gets_it(tmp_path: Path) -> None:
    # The sources table as it was before `last_visit_time` had a column: the visit was only in the document.
    path = tmp_path / "old.db"
    doc = Source(id="old", project_id=P, name="h", os_type=OsType.LINUX, registered_at=1.0, connected=True)
    doc.last_visit_time = 5.0
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE sources (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,"
            " connected INTEGER NOT NULL, registered_at REAL NOT NULL, doc TEXT NOT NULL)"
        )
        db.execute("INSERT INTO sources VALUES ('old', ?, 'h', 1, 1.0, ?)", (P, json.dumps(doc.to_doc())))
    store = SqliteStore(path)
    try:
        cp = ControlPlane(store, liveness=Liveness(LivenessWrite.EVERY_POLL))
        assert cp.get_source(P, "old")[0].last_visit_time == 5.0  # filled from the document
        assert [s.id for s in cp.list_sources(P, 50.0, connected=True)[1]] == ["old"]
        cp.poll(P, "old", 200.0)
        with store.read() as tx:
            assert tx.source_brief("old") == (P, True, 200.0)
    finally:
        store.close()
    again = SqliteStore(path)  # and opening it again finds the column there
    try:
        with again.read() as tx:
            assert tx.source_brief("old") == (P, True, 200.0)
    finally:
        again.close()


def _register_and_start(path: str, worker: int, barrier: mp.synchronize.Barrier) -> None:
    """One process of the concurrency test: its own store object, opened at the same moment as the other's."""
    barrier.wait()
    store = SqliteStore(path)
    cp = ControlPlane(store)
    for i in range(PER_PROCESS):
        sid = cp.register(P, Registration(name=f"w{worker}-{i}", os_type=OsType.LINUX), float(i))
        tid = cp.create_task(P, TaskSpec(name=f"w{worker}-{i}", type=TaskType.MIGRATE_BLOCK, source_id=sid), float(i))
        cp.act(P, tid, Action.START, float(i))
    store.close()


def test_two_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")  # not created yet: both processes also race to create the schema
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    workers = [ctx.Process(target=_register_and_start, args=(path, w, barrier)) for w in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=240)
    assert [w.exitcode for w in workers] == [0, 0]

    store = SqliteStore(path)
    try:
        cp = ControlPlane(store)
        total, sources = cp.list_sources(P, limit=1000)
        assert total == 2 * PER_PROCESS and len({s.name for s in sources}) == 2 * PER_PROCESS
        total, tasks = cp.list_tasks(P, limit=1000)
        assert total == 2 * PER_PROCESS and all(t.state is TaskState.RUNNING for t in tasks)
        commands = store.commands()
        assert len(commands) == 2 * PER_PROCESS and len({c.seq for c in commands}) == 2 * PER_PROCESS
        assert {c.task_id for c in commands} == {t.id for t in tasks}
        assert len(store.events()) == 2 * 2 * PER_PROCESS  # create + start per task
        for task in tasks[::50]:
            assert cp.poll(P, task.source_id, 1e6) == Command(CommandName.START, task_id=task.id)
    finally:
        store.close()


def _child_registers(store: SqliteStore) -> None:
    ControlPlane(store).register(P, Registration(name="from-child", os_type=OsType.LINUX), 2.0)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork()")
def test_a_forked_worker_reopens_its_own_connection(sqlite_store: SqliteStore) -> None:
    # The server may create the store, use it, then fork workers: each must open its own connection.
    cp = ControlPlane(sqlite_store)
    cp.register(P, Registration(name="from-parent", os_type=OsType.LINUX), 1.0)
    child = mp.get_context("fork").Process(target=_child_registers, args=(sqlite_store,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    # The parent's connection still works and sees the child's commit.
    cp.register(P, Registration(name="parent-again", os_type=OsType.LINUX), 3.0)
    assert [s.name for s in cp.list_sources(P)[1]] == ["from-parent", "from-child", "parent-again"]
