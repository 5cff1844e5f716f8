"""Stores for the reference server, chosen by URL.

- `sqlite:///PATH` (the default): embedded SQLite in WAL mode, one connection per process;
- `postgresql://...`: PostgreSQL through psycopg, one connection per process;
- `memory://`: the in-memory store (one process only; for tests and quick looks).
"""

from __future__ import annotations

from sim.model.store import MemoryStore, Store


def open_store(url: str) -> Store:
    """Open (and on first use create) the store named by `url`."""
    if url == "memory://" or url == "memory":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from sim.server.stores.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from sim.server.stores.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unknown store URL {url!r}: expected sqlite:///PATH, postgresql://... or memory://")
