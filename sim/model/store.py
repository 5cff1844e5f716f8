"""The store interface the control plane works over, and the in-memory store.

A store only keeps records; every rule lives in `ControlPlane`. Work happens in a
transaction: `store.read()` for look-ups, `store.write()` for changes (all or nothing in the
SQL stores, which roll back on an exception).
The SQLite and PostgreSQL stores of the reference server implement the same interface and
pass the same contract tests (`tests/model/test_store_contract.py`).

`MemoryStore` hands out its live records and has no rollback: the control plane checks every
rule before it changes a record, so a rejected request leaves nothing half-changed there either. It is single-threaded
(the simulation is) and keeps command queues as deques, so a poll is two dict look-ups.
"""

from __future__ import annotations

from collections import deque
from contextlib import AbstractContextManager as ContextManager
from typing import Protocol

from sim.model.entities import CommandRecord, Source, Task, TaskEvent


class Tx(Protocol):
    """The operations of one transaction."""

    def source_brief(self, source_id: str) -> tuple[str, bool, float | None] | None:
        """(project_id, connected, last_visit_time) of a source: the cheap look-up a poll needs."""

    def get_source(self, source_id: str, lock: bool = False) -> Source | None: ...
    def insert_source(self, source: Source) -> None: ...
    def update_source(self, source: Source) -> None: ...
    def touch_source(self, source_id: str, now: float) -> None:
        """Record an agent's visit: `connected` true and `last_visit_time` `now` (never moved back).
        A poll's liveness write: the SQL stores change these two columns and nothing else."""

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
        """A page of the project's sources. With `seen_since`, `connected` means connected AND last
        seen at or after it (`connected=False`: the others); the sources come back as stored."""

    def get_task(self, task_id: str, lock: bool = False) -> Task | None: ...
    def insert_task(self, task: Task) -> None: ...
    def update_task(self, task: Task) -> None: ...
    def delete_task(self, task_id: str) -> None: ...
    def list_tasks(
        self,
        project_id: str,
        *,
        state: str | None = None,
        name: str | None = None,
        source_id: str | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> tuple[int, list[Task]]: ...

    def head_command(self, source_id: str) -> CommandRecord | None:
        """The oldest unacknowledged command for this source."""

    def add_command(self, command: CommandRecord) -> int:
        """Queue a command at the tail of its source's FIFO; returns (and sets) its seq."""

    def update_command(self, command: CommandRecord) -> None:
        """Persist delivered_at / acked_at / result; an acknowledged command leaves the queue."""

    def add_event(self, event: TaskEvent) -> None: ...


class Store(Protocol):
    def read(self) -> ContextManager[Tx]: ...
    def write(self) -> ContextManager[Tx]: ...
    def commands(self) -> list[CommandRecord]:
        """Every command ever queued, in seq order (for dispatch-latency reports)."""

    def pending_commands(self) -> int:
        """How many commands are queued and not yet acknowledged (the server's /metrics)."""

    def events(self) -> list[TaskEvent]:
        """Every recorded task transition, in order."""

    def close(self) -> None: ...


def page(items: list, limit: int, offset: int) -> tuple[int, list]:
    """The API's paging: `limit` 0 means the default of 200."""
    limit = limit or 200
    return len(items), items[offset : offset + limit]


def _connected(src: Source, seen_since: float | None) -> bool:
    """The listing filter's `connected`, as the SQL stores evaluate it."""
    last = src.last_visit_time
    return src.connected and (seen_since is None or (last is not None and last >= seen_since))


class _Unit:
    """`with store.read() as tx`: a class, not @contextmanager, since a poll enters it every time."""

    __slots__ = ("store",)

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def __enter__(self) -> MemoryStore:
        return self.store

    def __exit__(self, *exc: object) -> None:
        return None


class MemoryStore:
    """The in-memory store: for the simulation and for unit tests."""

    def __init__(self) -> None:
        self._unit = _Unit(self)
        self._sources: dict[str, Source] = {}
        self._tasks: dict[str, Task] = {}
        self._queues: dict[str, deque[CommandRecord]] = {}
        self._commands: list[CommandRecord] = []
        self._events: list[TaskEvent] = []

    def read(self) -> _Unit:
        return self._unit

    # No rollback is needed: the control plane raises only before it changes anything.
    write = read

    def source_brief(self, source_id: str) -> tuple[str, bool, float | None] | None:
        src = self._sources.get(source_id)
        return None if src is None else (src.project_id, src.connected, src.last_visit_time)

    def get_source(self, source_id: str, lock: bool = False) -> Source | None:
        return self._sources.get(source_id)

    def insert_source(self, source: Source) -> None:
        self._sources[source.id] = source  # its queue is made on its first command (a deque is ~600 B)

    def update_source(self, source: Source) -> None:
        self._sources[source.id] = source

    def touch_source(self, source_id: str, now: float) -> None:
        src = self._sources.get(source_id)
        if src is not None:
            src.connected = True
            if src.last_visit_time is None or now > src.last_visit_time:
                src.last_visit_time = now

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
        found = [
            s
            for s in self._sources.values()
            if s.project_id == project_id
            and (name is None or s.name == name)
            and (connected is None or _connected(s, seen_since) == connected)
        ]
        return page(sorted(found, key=lambda s: (s.registered_at, s.id)), limit, offset)

    def get_task(self, task_id: str, lock: bool = False) -> Task | None:
        return self._tasks.get(task_id)

    def insert_task(self, task: Task) -> None:
        self._tasks[task.id] = task

    def update_task(self, task: Task) -> None:
        self._tasks[task.id] = task

    def delete_task(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)

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
        found = [
            t
            for t in self._tasks.values()
            if t.project_id == project_id
            and (state is None or t.state.value == state)
            and (name is None or t.name == name)
            and (source_id is None or t.source_id == source_id)
        ]
        return page(sorted(found, key=lambda t: (t.create_date, t.id)), limit, offset)

    def head_command(self, source_id: str) -> CommandRecord | None:
        queue = self._queues.get(source_id)
        return queue[0] if queue else None

    def add_command(self, command: CommandRecord) -> int:
        self._commands.append(command)
        command.seq = len(self._commands)
        self._queues.setdefault(command.source_id, deque()).append(command)
        return command.seq

    def update_command(self, command: CommandRecord) -> None:
        if command.acked_at is not None:
            queue = self._queues[command.source_id]
            if queue and queue[0] is command:
                queue.popleft()
            elif command in queue:
                queue.remove(command)

    def add_event(self, event: TaskEvent) -> None:
        self._events.append(event)

    def commands(self) -> list[CommandRecord]:
        return list(self._commands)

    def pending_commands(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def events(self) -> list[TaskEvent]:
        return list(self._events)

    def close(self) -> None:
        pass
