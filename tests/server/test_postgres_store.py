"""PostgreSQL store specifics: concurrent schema creation, and the head of a queue under concurrent writes."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from sim.model.commands import CommandName
from sim.model.controlplane import ControlPlane
from sim.model.entities import CommandRecord, Source
from sim.model.lifecycle import OsType
from sim.model.liveness import Liveness, LivenessWrite
from sim.server.stores.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def test_stores_starting_at_once_create_the_schema_once(pg_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        store = PostgresStore(pg_url)
        try:
            with store.read() as tx:
                tx.source_brief("x")
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_store_opened_on_a_complete_schema_waits_for_no_writer(pg_url: str) -> None:
    """A second worker's first connection, while the first worker writes: no DDL, so no lock.
    CREATE INDEX IF NOT EXISTS takes a SHARE lock on its table before it looks; run on a complete
    schema it waited for every open write, and deadlocked with one (a 500 under load)."""
    first = PostgresStore(pg_url)
    with first.read() as tx:
        tx.source_brief("x")  # the schema is created
    with psycopg.connect(pg_url) as writer:
        writer.execute("LOCK TABLE tasks IN ROW EXCLUSIVE MODE")  # as an INSERT into tasks holds it
        opened: list[str] = []

        def second() -> None:
            store = PostgresStore(pg_url)
            try:
                with store.read() as tx:
                    tx.source_brief("x")
                opened.append("ok")
            finally:
                store.close()

        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        thread.join(timeout=10)
        done = opened == ["ok"]
        writer.rollback()  # lets a blocked second store go on, so that nothing is left waiting
    thread.join(timeout=10)
    first.close()
    assert done, "opening a store on a complete schema waited for a writer's lock"


def test_a_database_from_before_the_liveness_column_gets_it(pg_url: str) -> None:
    # The sources table as it was before `last_visit_time` had a column: the visit was only in the document.
    doc = Source(id="old", project_id="p", name="h", os_type=OsType.LINUX, registered_at=1.0, connected=True)
    doc.last_visit_time = 5.0
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE sources (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,"
            " connected BOOLEAN NOT NULL, registered_at DOUBLE PRECISION NOT NULL, doc JSONB NOT NULL)"
        )
        db.execute("INSERT INTO sources VALUES ('old', 'p', 'h', TRUE, 1.0, %s)", (Jsonb(doc.to_doc()),))
    store = PostgresStore(pg_url)
    try:
        cp = ControlPlane(store, liveness=Liveness(LivenessWrite.EVERY_POLL))
        assert cp.get_source("p", "old")[0].last_visit_time == 5.0  # filled from the document
        assert [s.id for s in cp.list_sources("p", 50.0, connected=True)[1]] == ["old"]
        cp.poll("p", "old", 200.0)
        with store.read() as tx:
            assert tx.source_brief("old") == ("p", True, 200.0)
    finally:
        store.close()
    again = PostgresStore(pg_url)  # and opening it again finds the column there
    try:
        with again.read() as tx:
            assert tx.source_brief("old") == ("p", True, 200.0)
    finally:
        again.close()


def _wait_until_blocked(admin: psycopg.Connection[Any], pid: int, worker: threading.Thread) -> None:
    """Return once backend `pid` waits for a lock; fail if the worker finished without waiting."""
    deadline = time.monotonic() + 60  # a guard against hanging, not a timing assertion
    while time.monotonic() < deadline:
        row = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        assert worker.is_alive(), "the second transaction read the head without waiting for the first"
        time.sleep(0.01)
    pytest.fail(f"backend {pid} never waited for the source row lock")


def test_head_command_in_a_write_waits_for_a_concurrent_acknowledgement(pg_url: str) -> None:
    first, second = PostgresStore(pg_url), PostgresStore(pg_url)
    try:
        with first.write() as tx:
            tx.insert_source(Source(id="s1", project_id="p", name="h", os_type=OsType.LINUX, registered_at=1.0))
            for name in (CommandName.START, CommandName.STOP):
                tx.add_command(CommandRecord("s1", "t1", name, {"task_id": "t1"}, 1.0))
        with second.read() as tx:
            pid = tx.query("SELECT pg_backend_pid()")[0][0]
        seen: list[CommandRecord | None] = []

        def second_write() -> None:
            with second.write() as tx2:
                seen.append(tx2.head_command("s1"))

        with psycopg.connect(pg_url, autocommit=True) as admin:
            with first.write() as tx:
                head = tx.head_command("s1")
                assert head is not None and head.name is CommandName.START
                head.acked_at, head.result = 2.0, "success"
                tx.update_command(head)
                worker = threading.Thread(target=second_write)
                worker.start()
                _wait_until_blocked(admin, pid, worker)
            worker.join()
        # The second transaction decided on the head only after the first committed its acknowledgement.
        assert [c.name for c in seen if c is not None] == [CommandName.STOP]
    finally:
        first.close()
        second.close()
