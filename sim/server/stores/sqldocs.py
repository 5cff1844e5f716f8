"""What the SQLite and PostgreSQL stores do alike: source and task rows, listings with paging.

Both keep sources and tasks as JSON documents beside the columns the filters need; they differ
in the parameter placeholder (`?` or `%s`), in how a document goes in and out (JSON text or
JSONB), and in row locking, which stays in each store. A store's Tx class sets `PH`,
`_encode` and `_decode` and inherits the rest.

A source's `connected` and `last_visit_time` live in columns of their own, and the columns, not
the document, are the truth: a poll records its agent's visit by changing just those two
(`touch_source`, one short UPDATE), so the document keeps whatever it had when the source was
last written whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.model.entities import Source, Task

# What a source is read from: its document and the two liveness columns that override it.
SOURCE_COLS = "doc, connected, last_visit_time"


def _value(x: Any) -> Any:
    """A filter value as stored: enum members (TaskState) by their value."""
    return getattr(x, "value", x)


class DocTables:
    """Rows of `sources` and `tasks` (documents plus filter columns), for one connection `_db`."""

    __slots__ = ()
    PH = "?"
    _db: Any

    def _encode(self, doc: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _decode(self, raw: Any) -> dict[str, Any]:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self.PH)

    def _source(self, row: tuple[Any, ...]) -> Source:
        """A source from a row of SOURCE_COLS."""
        src = Source.from_doc(self._decode(row[0]))
        src.connected, src.last_visit_time = bool(row[1]), row[2]
        return src

    def insert_source(self, source: Source) -> None:
        self._db.execute(
            self._sql(
                "INSERT INTO sources (id, project_id, name, connected, last_visit_time, registered_at, doc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                source.id,
                source.project_id,
                source.name,
                source.connected,
                source.last_visit_time,
                source.registered_at,
                self._encode(source.to_doc()),
            ),
        )

    def update_source(self, source: Source) -> None:
        self._db.execute(
            self._sql("UPDATE sources SET name = ?, connected = ?, last_visit_time = ?, doc = ? WHERE id = ?"),
            (source.name, source.connected, source.last_visit_time, self._encode(source.to_doc()), source.id),
        )

    def list_sources(
        self,
        project_id: str,
        *,
        name: str | None = None,
        connected: bool | None = None,
        seen_since: float | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> tuple[int, list[Source]]:
        if connected is None or seen_since is None:
            filters = {"project_id": project_id, "name": name, "connected": connected}
            return self._page("sources", filters, "registered_at, id", limit, offset, self._source, SOURCE_COLS)
        # Connected now: connected when last seen, and seen recently enough (a NULL visit never is).
        ph = self.PH
        recent = f"(connected = {ph} AND last_visit_time IS NOT NULL AND last_visit_time >= {ph})"
        where = (recent if connected else f"NOT {recent}", [True, seen_since])
        filters = {"project_id": project_id, "name": name}
        return self._page("sources", filters, "registered_at, id", limit, offset, self._source, SOURCE_COLS, where)

    def insert_task(self, task: Task) -> None:
        self._db.execute(
            self._sql(
                "INSERT INTO tasks (id, project_id, name, state, source_id, create_date, doc)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            (
                task.id,
                task.project_id,
                task.name,
                task.state.value,
                task.source_id,
                task.create_date,
                self._encode(task.to_doc()),
            ),
        )

    def update_task(self, task: Task) -> None:
        self._db.execute(
            self._sql("UPDATE tasks SET name = ?, state = ?, doc = ? WHERE id = ?"),
            (task.name, task.state.value, self._encode(task.to_doc()), task.id),
        )

    def delete_task(self, task_id: str) -> None:
        self._db.execute(self._sql("DELETE FROM tasks WHERE id = ?"), (task_id,))

    def list_tasks(
        self,
        project_id: str,
        *,
        state: str | None = None,
        name: str | None = None,
        source_id: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> tuple[int, list[Task]]:
        filters = {"project_id": project_id, "state": state, "name": name, "source_id": source_id}
        return self._page("tasks", filters, "create_date, id", limit, offset, self._task, "doc")

    def _task(self, row: tuple[Any, ...]) -> Task:
        return Task.from_doc(self._decode(row[0]))

    def _page(
        self,
        table: str,
        filters: dict[str, Any],
        order: str,
        limit: int,
        offset: int,
        record: Callable[[tuple[Any, ...]], Any],
        columns: str,
        also: tuple[str, list[Any]] | None = None,
    ) -> tuple[int, list[Any]]:
        """One page of a listing; `filters` maps column -> value, None meaning "any"; `also` is one
        more condition with its arguments; `record` turns a row of `columns` into a record."""
        used = {column: _value(value) for column, value in filters.items() if value is not None}
        clauses = [f"{column} = {self.PH}" for column in used]
        args = list(used.values())
        if also is not None:
            clauses.append(also[0])
            args += also[1]
        where = " AND ".join(clauses)
        # Table and column names come from this module only; values are always parameters.
        (total,) = self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", args).fetchone() or (0,)
        limit = limit or 200  # the API's paging, as `sim.model.store.page`: 0 means the default
        rows = self._db.execute(
            f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order} LIMIT {self.PH} OFFSET {self.PH}",
            [*args, limit, offset],
        ).fetchall()
        return total, [record(r) for r in rows]
