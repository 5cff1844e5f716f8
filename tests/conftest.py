"""Shared fixtures. Store fixtures: `store` (every store kind), `control_plane`, `pg_url`.

PostgreSQL tests need the server at `PG_TEST_URL` (default: 127.0.0.1:5432, database
`test`). Where it is unreachable they skip, except under `CI=true`, where they fail: CI must
not pass while silently testing less.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from sim.model.controlplane import ControlPlane
from sim.model.store import MemoryStore, Store

PG_TEST_URL = os.environ.get("PG_TEST_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_unavailable(why: str) -> NoReturn:
    msg = f"PostgreSQL at {PG_TEST_URL} is unreachable ({why})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{msg}; CI=true requires it (start it, or set PG_TEST_URL)", pytrace=False)
    pytest.skip(f"{msg}; set PG_TEST_URL or start it to run the PostgreSQL tests")


@contextmanager
def pg_schema() -> Iterator[str]:
    """A URL of the test database whose search_path is a fresh schema, dropped on exit (for
    fixtures of any scope); skips (fails under CI=true) when PostgreSQL is unreachable."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_TEST_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        admin = None
    if admin is None:  # outside the except block: the report shows our message, not a chained traceback
        _pg_unavailable(why)
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            sep = "&" if "?" in PG_TEST_URL else "?"
            yield f"{PG_TEST_URL}{sep}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL of the test database whose search_path is a fresh schema, dropped afterwards."""
    with pg_schema() as url:
        yield url


def _open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from sim.server.stores.sqlite import SqliteStore

        return SqliteStore(tmp_path / "sms.db")
    from sim.server.stores.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_url"))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh, empty store of each kind: memory, SQLite (a new file), PostgreSQL (a new schema)."""
    opened = _open_store(request.param, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def control_plane(store: Store) -> ControlPlane:
    """The control plane over each kind of store."""
    return ControlPlane(store)
