"""What the SQLite and PostgreSQL stores do alike: source and task rows, listings with paging.

Both keep sources and tasks as JSON documents beside the columns the filters need; they differ
in the parameter placeholder (`?` or `%s`), in how a document goes in and out (JSON text or
JSONB), and in row locking, which stays in each store. A store's Tx class sets `PH`,
`_encode` and `_decode` and inherits the rest.
"""

from __future__ import annotations

from typing import Any

from sim.model.entities import Source, Task


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

    def insert_source(self, source: Source) -> None:
        self._db.execute(
            self._sql(
                "INSERT INTO sources (id, project_id, name, connected, registered_at, doc) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (
                source.id,
                source.project_id,
                source.name,
                source.connected,
                source.registered_at,
                self._encode(source.to_doc()),
            ),
        )

    def update_source(self, source: Source) -> None:
        self._db.execute(
            self._sql("UPDATE sources SET name = ?, connected = ?, doc = ? WHERE id = ?"),
            (source.name, source.connected, self._encode(source.to_doc()), source.id),
        )

    def list_sources(
        self,
        project_id: str,
        *,
        name: str | None = None,
        connected: bool | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> tuple[int, list[Source]]:
        filters = {"project_id": project_id, "name": name, "connected": connected}
        return self._page("sources", filters, "registered_at, id", limit, offset, Source)

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
        return self._page("tasks", filters, "create_date, id", limit, offset, Task)

    def _page(
        self, table: str, filters: dict[str, Any], order: str, limit: int, offset: int, cls: type[Source] | type[Task]
    ) -> tuple[int, list[Any]]:
        """One page of a listing; `filters` maps column -> value, None meaning "any"."""
        used = {column: _value(value) for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = {self.PH}" for column in used)
        args = list(used.values())
        # Table and column names come from this module only; values are always parameters.
        (total,) = self._db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", args).fetchone() or (0,)
        limit = limit or 200  # the API's paging, as `sim.model.store.page`: 0 means the default
        rows = self._db.execute(
            f"SELECT doc FROM {table} WHERE {where} ORDER BY {order} LIMIT {self.PH} OFFSET {self.PH}",
            [*args, limit, offset],
        ).fetchall()
        return total, [cls.from_doc(self._decode(r[0])) for r in rows]
