"""The knee rig pins the PostgreSQL backends of its own connections (found by application_name),
and only those, to the server's cores (`benchmarks/knee/pgpin.py`). Real PostgreSQL at 127.0.0.1."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "knee"))

import pgpin  # noqa: E402

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _connect(url: str) -> psycopg.Connection[tuple[int]]:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG_URL}: {exc}")


def test_only_the_named_backends_are_pinned() -> None:
    name = f"knee_pin_{uuid.uuid4().hex[:8]}"
    url = f"{PG_URL}?application_name={name}"
    assert pgpin.application_name(url) == name and pgpin.application_name(PG_URL) is None
    assert pgpin.cpus_of(("--store-latency-ms", "4", "--cpus", "0")) == {0}
    assert pgpin.cpus_of(("--cpu-quota", "0.1")) is None
    cpus = {min(os.sched_getaffinity(0))}
    with _connect(url) as ours, _connect(PG_URL) as other:
        ours_pid = ours.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        other_pid = other.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        other_before = os.sched_getaffinity(other_pid)
        pinner = pgpin.BackendPinner(PG_URL, name, cpus)
        pinner.start()
        line = pinner.stop()
        if pinner.error:
            assert line.startswith("NOT pinned") and "needs root" in line
            return
        assert line == f"1 backend(s) pinned to cores ({min(cpus)},)"
        assert pinner.pinned == {ours_pid: sorted(cpus)}
        assert os.sched_getaffinity(ours_pid) == cpus
        assert os.sched_getaffinity(other_pid) == other_before


def test_no_backend_seen_is_said() -> None:
    pinner = pgpin.BackendPinner(PG_URL, f"knee_none_{uuid.uuid4().hex[:8]}", {0})
    pinner.start()
    line = pinner.stop()
    assert line.startswith("NOT pinned"), line
