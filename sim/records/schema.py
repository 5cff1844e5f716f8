"""The tables of a run directory: one schema for simulated and measured runs.

Times are seconds since the run started (`t_*_s`, `*_s`), in the run's own clock (virtual
for a simulation, wall for a load test); latencies are milliseconds (`*_ms`). Every column,
its type, unit and meaning is in `docs/records.md` (a test holds that document to `TABLES`).

What a reader can rely on:
- "none" is null in every table, never an empty string or -1 (a poll that received no
  command has a null `command_name`, a task's creation a null `from_state`);
- categories (executor, endpoint, method, error, command_name) are dictionary-encoded:
  small on disk, categoricals in pandas, `Categorical` in polars, `VARCHAR` in duckdb;
- each file's key-value metadata holds `smsload.schema_version` (`SCHEMA_VERSION`), its
  table's name, the run's clock and, for a load test (wall clock), `smsload.t0_epoch`: epoch
  seconds of t = 0, so `t0 + t_*_s` is an absolute UTC time (`sim.records.with_timestamps`
  adds those columns). A simulation's files have none: its clock is virtual, and the same
  scenario and seed must give byte-identical files.

A run written before the schema had a version (version 1: plain strings, "" for none,
progress -1) still loads: `load_run` brings its tables to this schema (`conform`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 2  # 1: plain strings, "" and -1 for none, no metadata (before issue 12)
CATEGORY = pa.dictionary(pa.int32(), pa.string())  # a string column of few distinct values

REQUEST_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("executor", CATEGORY),
        ("agent_id", pa.int64()),  # -1 is the operator
        ("endpoint", CATEGORY),  # the path template, e.g. /v1/sms/sources/{source_id}/command
        ("method", CATEGORY),
        ("t_sched_s", pa.float64()),  # when the model meant to send
        ("t_start_s", pa.float64()),  # when it was sent; t_start_s - t_sched_s is the generator's lag
        ("latency_ms", pa.float64()),
        ("status", pa.int32()),  # 0: no response (timeout, refused)
        ("ok", pa.bool_()),
        ("error", CATEGORY),  # SMS error code, or the transport failure; null: none
        ("command_name", CATEGORY),  # the command received (poll) or reported (command_result); null: none
        ("task_id", pa.string()),  # null: the request is about no task
        ("queue_wait_ms", pa.float64()),  # simulation: time waiting for a worker (and the write lock)
        ("server_ms", pa.float64()),  # simulation: service time; load test: Server-Timing app - body
    ]
)
TASK_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("t_s", pa.float64()),
        ("task_id", pa.string()),
        ("source_id", pa.string()),  # null: unknown (tables rebuilt from what the agents saw)
        ("from_state", pa.string()),  # null: the task's creation
        ("to_state", pa.string()),
        ("trigger", pa.string()),
        ("subtask", pa.string()),  # null: not a progress report
        ("progress", pa.int32()),  # null: not a progress report
    ]
)
COMMAND_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("seq", pa.int64()),
        ("source_id", pa.string()),
        ("task_id", pa.string()),
        ("command_name", CATEGORY),
        ("enqueued_s", pa.float64()),
        ("delivered_s", pa.float64()),  # null: never delivered
        ("acked_s", pa.float64()),  # null: never acknowledged
        ("result", pa.string()),  # success / fail; null: not acknowledged
    ]
)
GENERATOR_SCHEMA = pa.schema(  # load tests only: the load generator's own health, once a second per process
    [
        ("t_s", pa.float64()),  # seconds since the run started
        ("process", pa.string()),  # "local", "master" or "worker-N"
        ("cpu_percent", pa.float64()),  # of one core, so a busy process shows ~100 whatever the machine
        ("rss_mb", pa.float64()),
        ("users", pa.int32()),  # Locust users running in that process
        ("loop_lag_ms", pa.float64()),  # how late the process's once-a-second timer fired: it could not run
        ("host_cpu_percent", pa.float64()),  # the whole machine (all cores): other load competes for the CPU
    ]
)
# latency_hist.parquet: request counts per endpoint, outcome, time bin and latency bucket (sim.records.hist).
HIST_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("executor", pa.string()),
        ("endpoint", pa.string()),  # the path template, as requests.parquet's `endpoint`
        ("method", pa.string()),
        ("status", pa.int32()),  # 0: no response
        ("ok", pa.bool_()),
        ("error", pa.string()),
        ("t_bin_s", pa.float64()),  # the time bin's start (requests binned by when they were sent)
        ("bin_s", pa.float64()),
        ("bucket", pa.int32()),
        ("latency_lo_ms", pa.float64()),
        ("latency_hi_ms", pa.float64()),  # the last bucket: infinite
        ("count", pa.int64()),
    ]
)
OPERATOR_ID = -1  # the agent_id of the operator's requests

#: Every table of a run directory, by file stem: what docs/records.md documents and its test checks.
#: A new table is one line here (and its section in the document).
TABLES: dict[str, pa.Schema] = {
    "requests": REQUEST_SCHEMA,
    "tasks": TASK_SCHEMA,
    "commands": COMMAND_SCHEMA,
    "generator": GENERATOR_SCHEMA,
    "latency_hist": HIST_SCHEMA,
}

VERSION_KEY, TABLE_KEY, T0_KEY, CLOCK_KEY = (
    b"smsload.schema_version",
    b"smsload.table",
    b"smsload.t0_epoch",
    b"smsload.clock",
)


def file_schema(name: str, t0_epoch: float | None, clock: str | None) -> pa.Schema:
    """The schema of table `name` with the key-value metadata its Parquet file carries."""
    meta = {VERSION_KEY: str(SCHEMA_VERSION).encode(), TABLE_KEY: name.encode()}
    if t0_epoch is not None:
        meta[T0_KEY] = repr(float(t0_epoch)).encode()
    if clock:
        meta[CLOCK_KEY] = clock.encode()
    return TABLES[name].with_metadata(meta)


def schema_version(schema: pa.Schema) -> int:
    """The schema version a file was written with (1: before versions were recorded)."""
    value = (schema.metadata or {}).get(VERSION_KEY)
    return int(value) if value else 1


def _none_is_null(column: pa.ChunkedArray | pa.Array, field: pa.Field) -> pa.ChunkedArray | pa.Array:
    """Version 1 wrote "" (strings) and -1 (progress) for none: make them null."""
    if pa.types.is_string(field.type) or pa.types.is_dictionary(field.type):
        column = column.cast(pa.string())
        return pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    if field.name == "progress":
        return pc.if_else(pc.less(column, 0), pa.scalar(None, column.type), column)
    return column


def conform(table: pa.Table, schema: pa.Schema, *, legacy: bool = False) -> pa.Table:
    """`table` with `schema`'s columns and types, in its order (missing columns null, others after).

    `legacy`: a version-1 table, whose "" and -1 stand for none. Run ids stay as written.
    """
    columns, fields = [], []
    for f in schema:
        if f.name in table.column_names:
            column = table[f.name]
            if legacy and f.name != "run_id":
                column = _none_is_null(column, f)
            if not column.type.equals(f.type):
                column = column.cast(f.type)
        else:
            column = pa.nulls(table.num_rows, f.type)
        columns.append(column)
        fields.append(f)
    for name in table.column_names:
        if name not in schema.names:
            columns.append(table[name])
            fields.append(table.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields, metadata=table.schema.metadata))
