"""The embedded SQLite store: the reference server's default.

Sources and tasks are JSON documents (`to_doc`/`from_doc`) beside the few columns the
filters and the poll need; commands and task events have tables of their own. The poll's two
look-ups (`source_brief`, then `head_command`) are answered by ONE indexed query over plain
columns, with no document decoding, because a poll is the request the whole fleet sends all
the time: `source_brief` fetches the source's head command with it, and `head_command` of
the same source, next in the same `read()`/`write()` block, takes that row instead of asking
again (see `SqliteTx.source_brief`).

Concurrency: WAL (readers never wait for the writer), `synchronous=NORMAL` by default (WAL
makes that durable except for the last commits on power loss, which a load-test server can
afford; `sqlite:///PATH?synchronous=full` when it cannot) and a
busy timeout so writers of other processes queue instead of failing. Each process has ONE
connection, opened lazily and re-opened after a fork: a SQLite connection must not be used
across `fork()`. Inside a process a lock makes transactions take turns, because sharing one
connection between threads would otherwise mix their statements into one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sim.model.commands import CommandName
from sim.model.entities import CommandRecord, Source, Task, TaskEvent
from sim.server.stores.sqldocs import SOURCE_COLS, DocTables

BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    connected INTEGER NOT NULL, registered_at REAL NOT NULL, doc TEXT NOT NULL,
    last_visit_time REAL);
CREATE INDEX IF NOT EXISTS sources_project ON sources (project_id, registered_at, id);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    source_id TEXT NOT NULL, create_date REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_project ON tasks (project_id, create_date, id);
CREATE INDEX IF NOT EXISTS tasks_source ON tasks (source_id);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, source_id TEXT NOT NULL, task_id TEXT NOT NULL,
    name TEXT NOT NULL, param TEXT, enqueued_at REAL NOT NULL,
    delivered_at REAL, acked_at REAL, result TEXT);
-- param is NULL for the common {"task_id": task_id}: the poll then builds it without decoding JSON.
-- Only pending commands are indexed: head_command is one short index seek, however long the history.
CREATE INDEX IF NOT EXISTS commands_pending ON commands (source_id, seq) WHERE acked_at IS NULL;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, t REAL NOT NULL, task_id TEXT NOT NULL,
    source_id TEXT NOT NULL, from_state TEXT NOT NULL, to_state TEXT NOT NULL,
    trigger TEXT NOT NULL, subtask TEXT NOT NULL, progress INTEGER NOT NULL);
"""

_HEAD = (
    "SELECT task_id, name, param, enqueued_at, seq, delivered_at FROM commands"
    " WHERE source_id = ? AND acked_at IS NULL ORDER BY seq LIMIT 1"
)
# The source's brief and its head command (NULLs when nothing is pending): two index seeks,
# one statement. Each statement outside a transaction takes and drops a WAL read lock, and
# one statement instead of two is a third of the poll's time in SQLite.
_BRIEF_AND_HEAD = (
    "SELECT s.project_id, s.connected, s.last_visit_time, c.task_id, c.name, c.param, c.enqueued_at, c.seq,"
    " c.delivered_at FROM sources s LEFT JOIN commands c ON c.seq = (SELECT seq FROM commands"
    " WHERE source_id = s.id AND acked_at IS NULL ORDER BY seq LIMIT 1) WHERE s.id = ?"
)
# Read the file through a memory map (up to this size) instead of a read() call per page
# not in SQLite's own cache: random polls over 10^5 sources touch pages all over the file.
MMAP_BYTES = 256 << 20
# A poll's liveness write: two columns of one row, no document (see sqldocs). max(): a visit
# recorded by a request that finished first is never moved back by a slower one.
_TOUCH = "UPDATE sources SET connected = 1, last_visit_time = max(coalesce(last_visit_time, ?), ?) WHERE id = ?"
_COMMAND_COLS = "source_id, task_id, name, param, enqueued_at, seq, delivered_at, acked_at, result"
_EVENT_COLS = "t, task_id, source_id, from_state, to_state, trigger, subtask, progress"


def _enable_wal(db: sqlite3.Connection) -> None:
    """Switch the file to WAL (a setting kept in the file), waiting for a concurrent opener.

    The switch needs a moment of exclusive access, and SQLite reports a clash with another
    process doing the same as "database is locked" at once, without the busy handler.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL for this database (journal_mode stays {mode!r})")


def _add_last_visit_time(db: sqlite3.Connection) -> None:
    """A database file from before the liveness column: add it, filled from each source's document."""
    if any(row[1] == "last_visit_time" for row in db.execute("PRAGMA table_info(sources)")):
        return
    db.execute("ALTER TABLE sources ADD COLUMN last_visit_time REAL")
    db.execute("UPDATE sources SET last_visit_time = json_extract(doc, '$.last_visit_time')")


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"))


_NAMES = {c.value: c for c in CommandName}  # a dict look-up is cheaper than CommandName(value)


def _param_text(command: CommandRecord) -> str | None:
    """The stored `param`: NULL when it is just the command's task id (see the schema)."""
    if command.param == {"task_id": command.task_id}:
        return None
    return _dumps(command.param)


def _command(row: tuple[Any, ...]) -> CommandRecord:
    source_id, task_id, name, param = row[:4]
    return CommandRecord(
        source_id, task_id, _NAMES[name], {"task_id": task_id} if param is None else json.loads(param), *row[4:]
    )


_OPENING = threading.Lock()


class SqliteTx(DocTables):
    """The Tx operations over one connection; `SqliteStore` decides where transactions begin and end."""

    __slots__ = ("_db", "_head")

    PH = "?"

    def _encode(self, doc: dict[str, Any]) -> Any:
        return _dumps(doc)

    def _decode(self, raw: Any) -> dict[str, Any]:
        return json.loads(raw)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        # (source id, row of _BRIEF_AND_HEAD) from the last source_brief, for head_command of the
        # same source. Forgotten when a read()/write() block begins or ends and when this
        # connection changes a command; so it is only ever used inside the block that fetched
        # it, where no other writer can change it unseen (a write block holds the write lock;
        # in a read block the two look-ups were never one snapshot, and now they are).
        self._head: tuple[str, tuple[Any, ...]] | None = None

    def forget(self) -> None:
        self._head = None

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of any read-only query (for the store's history views and for tests)."""
        return self._db.execute(sql, args).fetchall()

    def source_brief(self, source_id: str) -> tuple[str, bool, float | None] | None:
        row = self._db.execute(_BRIEF_AND_HEAD, (source_id,)).fetchone()
        if row is None:
            self._head = None
            return None
        self._head = (source_id, row)
        return row[0], row[1] == 1, row[2]

    def get_source(self, source_id: str, lock: bool = False) -> Source | None:
        # No row locks in SQLite: a write transaction (BEGIN IMMEDIATE) already excludes other writers.
        row = self._db.execute(f"SELECT {SOURCE_COLS} FROM sources WHERE id = ?", (source_id,)).fetchone()
        return None if row is None else self._source(row)

    def touch_source(self, source_id: str, now: float) -> None:
        self._db.execute(_TOUCH, (now, now, source_id))

    def get_task(self, task_id: str, lock: bool = False) -> Task | None:
        row = self._db.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else Task.from_doc(json.loads(row[0]))

    def head_command(self, source_id: str) -> CommandRecord | None:
        fetched, self._head = self._head, None
        if fetched is not None and fetched[0] == source_id:
            row = fetched[1][3:] if fetched[1][3] is not None else None  # task_id is NOT NULL
        else:
            row = self._db.execute(_HEAD, (source_id,)).fetchone()
        if row is None:
            return None
        task_id, name, param, enqueued_at, seq, delivered_at = row
        return CommandRecord(
            source_id,
            task_id,
            _NAMES[name],
            {"task_id": task_id} if param is None else json.loads(param),
            enqueued_at,
            seq,
            delivered_at,
        )

    def add_command(self, command: CommandRecord) -> int:
        self._head = None
        cur = self._db.execute(
            "INSERT INTO commands (source_id, task_id, name, param, enqueued_at, delivered_at, acked_at, result)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                command.source_id,
                command.task_id,
                command.name.value,
                _param_text(command),
                command.enqueued_at,
                command.delivered_at,
                command.acked_at,
                command.result,
            ),
        )
        command.seq = cur.lastrowid or 0
        return command.seq

    def update_command(self, command: CommandRecord) -> None:
        self._head = None
        self._db.execute(
            "UPDATE commands SET delivered_at = ?, acked_at = ?, result = ? WHERE seq = ?",
            (command.delivered_at, command.acked_at, command.result, command.seq),
        )

    def add_event(self, event: TaskEvent) -> None:
        self._db.execute(
            f"INSERT INTO events ({_EVENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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


# SQLite's `synchronous` in WAL mode: `full` syncs the log at every commit (an acknowledged
# write survives power loss), `normal` at checkpoints (it survives a crash of the process, the
# last commits may not survive one of the machine), `off` never.
SYNCHRONOUS = ("full", "normal", "off")


class SqliteStore:
    """The SQLite store in the file at `path` (created with its schema on first use)."""

    def __init__(self, path: str | os.PathLike[str], synchronous: str = "normal") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(f"synchronous: expected one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self._tx: SqliteTx | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # Connections inherited over fork(): kept referenced so the child never closes (and so
        # never checkpoints or unlocks) the parent's connection; SQLite forbids using it here.
        self._inherited: list[sqlite3.Connection] = []
        self._reading = _Reading(self)

    def _connect(self) -> SqliteTx:
        if self._db is not None:
            self._inherited.append(self._db)
            self._lock = threading.Lock()  # a lock held at fork time would never be released here
        # isolation_level=None: the module issues no implicit BEGINs; write() says exactly where they go.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=256)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enable_wal(db)
        db.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
        db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        db.execute("BEGIN IMMEDIATE")  # one process creates the schema while the others wait
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        _add_last_visit_time(db)
        db.execute("COMMIT")
        self._db, self._tx, self._pid = db, SqliteTx(db), os.getpid()
        return self._tx

    def _conn(self) -> SqliteTx:
        if self._pid != os.getpid():
            with _OPENING:  # two threads' first requests must not open two connections
                if self._pid != os.getpid():
                    self._connect()
        return self._tx  # type: ignore[return-value]

    def read(self) -> _Reading:
        # No BEGIN: each look-up reads the latest commit on its own (WAL), which is all a poll
        # needs, and saves two statements per poll; anything that must be consistent is a write.
        return self._reading

    @contextmanager
    def write(self) -> Iterator[SqliteTx]:
        tx = self._conn()
        with self._lock:
            db = self._db
            assert db is not None
            db.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write (no upgrade deadlocks)
            tx.forget()
            try:
                yield tx
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # some errors (disk full) have rolled back already
                    db.execute("ROLLBACK")
                raise
            finally:
                tx.forget()

    def commands(self) -> list[CommandRecord]:
        with self.read() as tx:
            rows = tx.query(f"SELECT {_COMMAND_COLS} FROM commands ORDER BY seq")
        return [_command(r) for r in rows]

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
        self._db, self._tx, self._pid = None, None, 0


class _Reading:
    """`SqliteStore.read()`: a plain class, not @contextmanager, as it runs on every poll."""

    __slots__ = ("_store",)

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    def __enter__(self) -> SqliteTx:
        tx = self._store._conn()  # (re)opens first, so the lock taken next is this process's
        self._store._lock.acquire()
        tx.forget()
        return tx

    def __exit__(self, *exc: object) -> None:
        if self._store._tx is not None:
            self._store._tx.forget()
        self._store._lock.release()
