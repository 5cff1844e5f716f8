"""The PostgreSQL store (psycopg 3, sync API) for a reference server that must scale past SQLite.

The same layout as the SQLite store: sources and tasks as JSONB documents beside the columns
the filters and the poll need, commands (BIGSERIAL seq) and task events in tables of their own.
A URL may carry `options=-c search_path=SCHEMA`; the tables are created in that schema (which
must exist), so tests and parallel runs can each have their own.

Concurrency: each write is one transaction. `get_source`/`get_task` with `lock=True` take the
row lock (`SELECT ... FOR UPDATE`), and `head_command` inside a write first locks its source
row, so two requests for one source (a poll's first delivery, a command_result) take turns
and each sees the other's committed queue. Enqueueing takes no source lock: only an operator
action on the source's task enqueues, and those already take turns on the task's row lock,
so per source the seq order is the commit order. Reads run outside a transaction (autocommit),
one round trip per look-up, as a poll needs. One connection per process, opened lazily and
re-opened after a fork (a libpq connection cannot be shared with a child).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sim.model.commands import CommandName
from sim.model.entities import CommandRecord, Source, Task, TaskEvent
from sim.server.stores.sqldocs import SOURCE_COLS, DocTables

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sources (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, connected BOOLEAN NOT NULL,
        registered_at DOUBLE PRECISION NOT NULL, doc JSONB NOT NULL, last_visit_time DOUBLE PRECISION)""",
    "CREATE INDEX IF NOT EXISTS sources_project ON sources (project_id, registered_at, id)",
    """CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
        source_id TEXT NOT NULL, create_date DOUBLE PRECISION NOT NULL, doc JSONB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS tasks_project ON tasks (project_id, create_date, id)",
    "CREATE INDEX IF NOT EXISTS tasks_source ON tasks (source_id)",
    """CREATE TABLE IF NOT EXISTS commands (
        seq BIGSERIAL PRIMARY KEY, source_id TEXT NOT NULL, task_id TEXT NOT NULL, name TEXT NOT NULL,
        param JSONB NOT NULL, enqueued_at DOUBLE PRECISION NOT NULL, delivered_at DOUBLE PRECISION,
        acked_at DOUBLE PRECISION, result TEXT)""",
    # Only pending commands are indexed: head_command is one short index seek, however long the history.
    "CREATE INDEX IF NOT EXISTS commands_pending ON commands (source_id, seq) WHERE acked_at IS NULL",
    """CREATE TABLE IF NOT EXISTS events (
        id BIGSERIAL PRIMARY KEY, t DOUBLE PRECISION NOT NULL, task_id TEXT NOT NULL,
        source_id TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL, trigger TEXT NOT NULL,
        subtask TEXT NOT NULL, progress INTEGER NOT NULL)""",
)

_BRIEF = "SELECT project_id, connected, last_visit_time FROM sources WHERE id = %s"
# A poll's liveness write: two columns of one row, no document (see sqldocs). GREATEST (which
# skips a NULL): a visit recorded by a request that finished first is never moved back.
_TOUCH = "UPDATE sources SET connected = TRUE, last_visit_time = GREATEST(last_visit_time, %s) WHERE id = %s"
# A database from before the liveness column: add it, filled from each source's document.
_HAS_LAST_VISIT = (
    "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 'sources' AND column_name = 'last_visit_time'"
)
# Every table and index of _SCHEMA (their names read from it), and the liveness column: all there,
# no DDL runs. CREATE INDEX IF NOT EXISTS takes a SHARE lock on its table before it looks, so a
# worker creating the schema while its twin already served writes deadlocked with them (a 500
# under load on a 2-worker start).
_NAMES = [re.search(r"IF NOT EXISTS (\w+)", statement).group(1) for statement in _SCHEMA]  # type: ignore[union-attr]
_COMPLETE = "SELECT " + " AND ".join(
    [*(f"to_regclass('{name}') IS NOT NULL" for name in _NAMES), f"EXISTS ({_HAS_LAST_VISIT})"]
)
_ADD_LAST_VISIT = (
    "ALTER TABLE sources ADD COLUMN last_visit_time DOUBLE PRECISION",
    "UPDATE sources SET last_visit_time = (doc->>'last_visit_time')::double precision",
)
_HEAD = (
    "SELECT task_id, name, param, enqueued_at, seq, delivered_at FROM commands"
    " WHERE source_id = %s AND acked_at IS NULL ORDER BY seq LIMIT 1"
)
_COMMAND_COLS = "source_id, task_id, name, param, enqueued_at, seq, delivered_at, acked_at, result"
_EVENT_COLS = "t, task_id, source_id, from_state, to_state, trigger, subtask, progress"


_OPENING = threading.Lock()


class PostgresTx(DocTables):
    """The Tx operations over one connection. In a write, remembers which source rows it has locked."""

    __slots__ = ("_db", "_locked")

    PH = "%s"

    def _encode(self, doc: dict[str, Any]) -> Any:
        return Jsonb(doc)

    def _decode(self, raw: Any) -> dict[str, Any]:
        return raw

    def __init__(self, db: psycopg.Connection[Any], writing: bool) -> None:
        self._db = db
        self._locked: set[str] | None = set() if writing else None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of any read-only query (for the store's history views and for tests)."""
        return self._db.execute(sql, args).fetchall()

    def source_brief(self, source_id: str) -> tuple[str, bool, float | None] | None:
        return self._db.execute(_BRIEF, (source_id,)).fetchone()

    def get_source(self, source_id: str, lock: bool = False) -> Source | None:
        if lock and self._locked is not None:
            sql = f"SELECT {SOURCE_COLS} FROM sources WHERE id = %s FOR UPDATE"
            row = self._db.execute(sql, (source_id,)).fetchone()
            self._locked.add(source_id)
        else:
            row = self._db.execute(f"SELECT {SOURCE_COLS} FROM sources WHERE id = %s", (source_id,)).fetchone()
        return None if row is None else self._source(row)

    def touch_source(self, source_id: str, now: float) -> None:
        # The UPDATE waits for a transaction holding the source's row (FOR UPDATE) and applies to
        # what that one committed; one that locks the row later reads the visit. Neither undoes the other.
        self._db.execute(_TOUCH, (now, source_id))

    def get_task(self, task_id: str, lock: bool = False) -> Task | None:
        sql = "SELECT doc FROM tasks WHERE id = %s" + (" FOR UPDATE" if lock and self._locked is not None else "")
        row = self._db.execute(sql, (task_id,)).fetchone()
        return None if row is None else Task.from_doc(row[0])

    def head_command(self, source_id: str) -> CommandRecord | None:
        if self._locked is not None and source_id not in self._locked:
            # A write decides on the head: wait for (and block) anyone else changing this queue.
            self._db.execute("SELECT 1 FROM sources WHERE id = %s FOR UPDATE", (source_id,))
            self._locked.add(source_id)
        row = self._db.execute(_HEAD, (source_id,)).fetchone()
        if row is None:
            return None
        return CommandRecord(source_id, row[0], CommandName(row[1]), row[2], row[3], row[4], row[5])

    def add_command(self, command: CommandRecord) -> int:
        row = self._db.execute(
            "INSERT INTO commands (source_id, task_id, name, param, enqueued_at, delivered_at, acked_at, result)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING seq",
            (
                command.source_id,
                command.task_id,
                command.name.value,
                Jsonb(command.param),
                command.enqueued_at,
                command.delivered_at,
                command.acked_at,
                command.result,
            ),
        ).fetchone()
        assert row is not None  # RETURNING always gives the row
        command.seq = row[0]
        return command.seq

    def update_command(self, command: CommandRecord) -> None:
        self._db.execute(
            "UPDATE commands SET delivered_at = %s, acked_at = %s, result = %s WHERE seq = %s",
            (command.delivered_at, command.acked_at, command.result, command.seq),
        )

    def add_event(self, event: TaskEvent) -> None:
        self._db.execute(
            f"INSERT INTO events ({_EVENT_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                event.t,
                event.task_id,
                event.source_id,
                event.from_state,
                event.to_state,
                event.trigger,
                event.subtask,
                event.progress,
            ),
        )


class PostgresStore:
    """The PostgreSQL store at `url` (a libpq URL; tables created on first use)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db: psycopg.Connection[Any] | None = None
        self._reader: PostgresTx | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # Connections inherited over fork(): kept referenced because closing (or collecting)
        # one in the child would send the server a Terminate and end the parent's session.
        self._inherited: list[psycopg.Connection[Any]] = []

    def _connect(self) -> psycopg.Connection[Any]:
        if self._db is not None:
            self._inherited.append(self._db)
            self._lock = threading.Lock()  # a lock held at fork time would never be released here
        # autocommit: a read is one statement with no BEGIN/COMMIT round trips; write() opens transactions.
        db = psycopg.connect(self.url, autocommit=True)
        if not self._complete(db):
            with db.transaction():
                # CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin; take turns,
                # and look again: the twin that went first may have created it all.
                db.execute("SELECT pg_advisory_xact_lock(hashtext('sim.server.stores.postgres schema'))")
                if not self._complete(db):
                    for statement in _SCHEMA:
                        db.execute(statement)
                    if db.execute(_HAS_LAST_VISIT).fetchone() is None:
                        for statement in _ADD_LAST_VISIT:
                            db.execute(statement)
        self._db, self._reader, self._pid = db, PostgresTx(db, writing=False), os.getpid()
        return db

    @staticmethod
    def _complete(db: psycopg.Connection[Any]) -> bool:
        """Whether every table, index and column of the schema is there (no lock taken)."""
        row = db.execute(_COMPLETE).fetchone()
        return bool(row and row[0])

    def _conn(self) -> psycopg.Connection[Any]:
        if self._pid != os.getpid():
            with _OPENING:  # two threads' first requests must not open two connections
                if self._pid != os.getpid():
                    self._connect()
        return self._db  # type: ignore[return-value]

    @contextmanager
    def read(self) -> Iterator[PostgresTx]:
        self._conn()
        with self._lock:
            yield self._reader  # type: ignore[misc]

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        db = self._conn()
        with self._lock, db.transaction():  # commits at the end, rolls back on any exception
            yield PostgresTx(db, writing=True)

    def commands(self) -> list[CommandRecord]:
        with self.read() as tx:
            rows = tx.query(f"SELECT {_COMMAND_COLS} FROM commands ORDER BY seq")
        return [CommandRecord(r[0], r[1], CommandName(r[2]), *r[3:]) for r in rows]

    def pending_commands(self) -> int:
        with self.read() as tx:
            rows = tx.query("SELECT count(*) FROM commands WHERE acked_at IS NULL")
        return int(rows[0][0])

    def events(self) -> list[TaskEvent]:
        with self.read() as tx:
            rows = tx.query(f"SELECT {_EVENT_COLS} FROM events ORDER BY id")
        return [TaskEvent(*r) for r in rows]

    def close(self) -> None:
        if self._db is not None and self._pid == os.getpid():
            self._db.close()
        elif self._db is not None:
            self._inherited.append(self._db)  # the parent's: never closed here (see __init__)
        self._db, self._reader, self._pid = None, None, 0
