"""The run tables as an analyst reads them: nulls for none, categories, schema version, t0, three readers.

One real simulation of the quickstart (about a second) is read with pandas (`load_run`),
polars and duckdb, which must agree row for row; a run written in the version-1 layout
(plain strings, "" and -1 for none, no metadata) must load exactly as the current one.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from sim.des.run import run_des
from sim.records import (
    REQUEST_SCHEMA,
    SCHEMA_VERSION,
    TABLES,
    RequestLog,
    RunDir,
    load_run,
    with_timestamps,
)
from sim.records.schema import CATEGORY
from sim.report.analysis import analyze_run
from sim.scenario import load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"
POLL = "/v1/sms/sources/{source_id}/command"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = load_scenario(QUICKSTART).with_overrides(agents=100, duration_s=20.0)
    return run_des(scenario, tmp_path_factory.mktemp("tables") / "sim")


def test_none_is_null_and_categories_are_dictionary_encoded(run: Path) -> None:
    for name in ("requests", "tasks", "commands"):
        table = pq.read_table(run / f"{name}.parquet")
        assert table.schema.equals(TABLES[name], check_metadata=False), name
        meta = table.schema.metadata
        assert meta[b"smsload.schema_version"] == str(SCHEMA_VERSION).encode()
        assert meta[b"smsload.table"] == name.encode()
        assert meta[b"smsload.clock"] == b"virtual" and b"smsload.t0_epoch" not in meta  # virtual time: no epoch
        for field in table.schema:
            if pa.types.is_string(field.type) or pa.types.is_dictionary(field.type):
                values = table[field.name].cast(pa.string())
                assert not pc.any(pc.equal(values, "")).as_py(), f"{name}.{field.name} has '' for none"
    requests = pq.read_table(run / "requests.parquet")
    for column in ("executor", "endpoint", "method", "error", "command_name"):
        assert requests.schema.field(column).type == CATEGORY
    r = load_run(run).requests
    idle = r[(r["endpoint"] == POLL) & r["ok"]]
    assert idle["command_name"].isna().any() and idle["command_name"].notna().any()  # polls with and without one
    assert r.loc[r["ok"], "error"].isna().all() and r["endpoint"].dtype == "category"
    tasks = load_run(run).tasks
    created = tasks[tasks["trigger"] == "create"]
    assert len(created) and created["from_state"].isna().all() and created["progress"].isna().all()
    assert tasks.loc[tasks["trigger"] == "progress", "progress"].notna().all()


def test_pandas_polars_and_duckdb_read_the_same_run(run: Path) -> None:
    pandas_requests = load_run(run).requests
    polars_requests = pl.read_parquet(run / "requests.parquet")
    assert polars_requests.height == len(pandas_requests) > 500
    assert polars_requests.schema["endpoint"] == pl.Categorical
    per_endpoint_pandas = pandas_requests.groupby("endpoint", observed=True).size()
    per_endpoint_polars = polars_requests.group_by("endpoint").len().sort("endpoint")
    assert dict(zip(per_endpoint_polars["endpoint"].cast(pl.String), per_endpoint_polars["len"])) == {
        str(k): int(v) for k, v in per_endpoint_pandas.items()
    }
    file = str(run / "requests.parquet")
    con = duckdb.connect()
    rows = con.execute(
        "SELECT endpoint, count(*), count(command_name), sum(latency_ms) FROM read_parquet(?) GROUP BY 1 ORDER BY 1",
        [file],
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(str(k) for k in per_endpoint_pandas.index)
    for endpoint, count, with_command, latency in rows:
        group = pandas_requests[pandas_requests["endpoint"] == endpoint]
        assert count == len(group) and with_command == group["command_name"].notna().sum()
        assert latency == pytest.approx(group["latency_ms"].sum())
    for name in ("tasks", "commands"):
        n = con.execute("SELECT count(*) FROM read_parquet(?)", [str(run / f"{name}.parquet")]).fetchone()
        rows_polars = pl.read_parquet(run / f"{name}.parquet").height
        assert n is not None and n[0] == len(getattr(load_run(run), name)) == rows_polars


def _as_version_1(src: Path, dst: Path) -> Path:
    """A copy of run `src` as written before issue 12: plain strings, "" and -1 for none, no metadata."""
    dst.mkdir()
    for item in src.iterdir():
        if item.suffix != ".parquet":
            (dst / item.name).write_bytes(item.read_bytes())
            continue
        table = pq.read_table(item)
        columns = []
        for field in table.schema:
            column = table[field.name]
            if pa.types.is_dictionary(field.type) or pa.types.is_string(field.type):
                column = column.cast(pa.string()).fill_null("")
            elif field.name == "progress":
                column = column.fill_null(-1)
            columns.append(column)
        plain = pa.table(columns, names=table.column_names)  # no metadata
        pq.write_table(plain, dst / item.name)
    return dst


def test_a_run_written_before_the_schema_version_loads_as_the_current_one(run: Path, tmp_path: Path) -> None:
    old = _as_version_1(run, tmp_path / "old")
    assert b"smsload.schema_version" not in (pq.read_schema(old / "requests.parquet").metadata or {})
    assert pq.read_table(old / "requests.parquet")["error"].type == pa.string()
    new_run, old_run = load_run(run), load_run(old)
    for name in ("requests", "tasks", "commands"):
        pd.testing.assert_frame_equal(getattr(old_run, name), getattr(new_run, name), check_categorical=False)
    a, b = analyze_run(old), analyze_run(run)
    pd.testing.assert_frame_equal(a.endpoints, b.endpoints)


def test_a_load_tests_tables_carry_t0_and_timestamps_follow_from_it(run: Path, tmp_path: Path) -> None:
    t0 = 1_790_000_000.25
    scenario = load_scenario(QUICKSTART)
    out = RunDir(tmp_path / "load", scenario, "locust", fields={"t0_epoch": t0})
    log = RequestLog()
    log.add(3, POLL, "GET", 1.0, 1.5, 2.0, 200, "")
    log.add(4, POLL, "GET", 2.0, 2.25, 3.0, 0, "ConnectionRefusedError")
    out.append_requests(log.take(out.run_id, "locust"))
    out.close_requests()
    meta = pq.read_schema(tmp_path / "load" / "requests.parquet").metadata
    assert float(meta[b"smsload.t0_epoch"]) == t0 and meta[b"smsload.clock"] == b"wall"
    loaded = load_run(tmp_path / "load")
    assert loaded.t0_epoch == t0
    stamped = with_timestamps(loaded.requests, loaded)
    assert list(stamped.columns[5:9]) == ["t_sched_s", "t_sched_utc", "t_start_s", "t_start_utc"]
    assert stamped["t_start_utc"].iloc[1] == pd.Timestamp(t0 + 2.25, unit="s", tz="UTC")
    assert stamped["error"].isna().tolist() == [True, False] and stamped["command_name"].isna().all()
    # A simulation has no epoch of its own: its virtual times are placed at the wall-clock start.
    sim = load_run(run)
    started = pd.Timestamp(json.loads((sim.path / "manifest.json").read_text())["started_at"])
    assert with_timestamps(sim.tasks, sim)["t_utc"].min() >= started


def test_request_rows_are_built_with_the_request_schema() -> None:
    log = RequestLog()
    log.add(1, POLL, "GET", 0.0, 0.0, 1.0, 200, "")
    table = log.take("r", "des")
    assert table.schema.equals(REQUEST_SCHEMA) and table["error"].null_count == 1
    assert table["command_name"].null_count == 1 and table["task_id"].null_count == 1
