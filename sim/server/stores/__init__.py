"""Stores for the reference server, chosen by URL.

- `sqlite:///PATH` (the default): embedded SQLite in WAL mode, one connection per process;
  `?synchronous=full` makes every acknowledged write survive a power loss (the default
  `normal` survives a crash of the server, not of the machine; `off` neither);
- `postgresql://...`: PostgreSQL through psycopg, one connection per process; every write is
  committed before it is acknowledged (`options=-csynchronous_commit%3Doff` in the URL trades
  the last commits on a crash of PostgreSQL for speed, as PostgreSQL documents);
- `memory://`: the in-memory store (one process only; for tests and quick looks).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from sim.model.store import MemoryStore, Store


def open_store(url: str) -> Store:
    """Open (and on first use create) the store named by `url`."""
    if url == "memory://" or url == "memory":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        from sim.server.stores.sqlite import SYNCHRONOUS, SqliteStore

        path, _, query = url.removeprefix("sqlite:///").partition("?")
        options = dict(parse_qsl(query, keep_blank_values=True))
        synchronous = options.pop("synchronous", "normal").lower()
        if options or synchronous not in SYNCHRONOUS:
            raise ValueError(f"sqlite:///PATH takes one option, ?synchronous={'|'.join(SYNCHRONOUS)}, got {query!r}")
        return SqliteStore(path, synchronous=synchronous)
    if url.startswith(("postgresql://", "postgres://")):
        from sim.server.stores.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unknown store URL {url!r}: expected sqlite:///PATH, postgresql://... or memory://")
