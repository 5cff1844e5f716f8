"""Run directories: one schema, one writer and one quantile definition for simulated and measured runs.

A run directory holds
- `manifest.json`: what the run was and how it ended (fields below);
- `requests.parquet`: one row per request (`REQUEST_SCHEMA`), written in chunks as the run goes;
- `tasks.parquet`: one row per task state transition (and per progress report);
- `commands.parquet`: one row per command queued, with its enqueue, first-delivery and ack times;
- `latency_hist.parquet` (instead of request rows, from an engine that counts requests: `fast`):
  per endpoint, outcome (status, error), time bin and log latency bucket, the exact count of
  requests (`HIST_SCHEMA`, `sim.records.hist`); `requests.parquet` is then empty;
- `summary.json`: per endpoint counts, throughput, latency quantiles and error rate; tasks
  completed and migration durations; command-dispatch latency. For a histogram run the
  quantiles are read off the histograms (within their relative error; `hist_summary`) and
  `latency_histograms` says so.

Times in the tables are seconds since the run started (`t_*_s`) in the run's own clock,
latencies milliseconds (`*_ms`). "None" is null in every table; categories are
dictionary-encoded; each Parquet file's metadata holds the schema version and t0 (epoch
seconds of t = 0). `load_run(path)` returns the tables as DataFrames (older runs brought to
the current schema), `with_timestamps(df, run)` adds UTC times. Every table, column, type,
unit and meaning: `docs/records.md`, checked against `TABLES` by a test.

The manifest has the same fields for every executor (`des`: the SimPy simulation, `fast`:
the compiled polling engine, `locust`: a load test), each present from the start and null
until known:

- `run_id`: des: deterministic (the same scenario and seed give the same id); locust: unique;
- `executor` and `clock`: `des` or `fast` and `virtual`, or `locust` and `wall`: the clock of
  the tables' times and of `duration_s`;
- `scenario`, `seed`, `agents`: the resolved scenario, its seed, its fleet size (overrides applied);
- `planned_duration_s`: how long the run was meant to last (locust: the scenario's, or `-t` if shorter);
- `duration_s`: how long it lasted in its own clock (an interrupted run: until the interruption);
- `wall_s`: the wall-clock seconds it took (des: the computation; locust: the same as `duration_s`);
- `started_at`, `ended_at`: wall clock, ISO 8601 UTC;
- `complete`: false until the run ended normally (an interrupted or killed run stays false);
- `requests`: the rows of requests.parquet, or for a histogram run the requests its
  histograms count;
- `latency_histograms`: null, or for a run with latency_hist.parquet what its histograms are:
  `schema_version`, `rel_width`, `lo_ms`, `hi_ms`, `n_buckets` (the `LogBins`), `rel_error`
  (the largest relative error of a latency read off them, sqrt(1 + rel_width) - 1) and
  `bin_s` (the width of its time bins);
- `server_tables`: where tasks.parquet and commands.parquet came from (des: the simulated
  control plane; locust: the server's export, or what the agents and operator observed);
- `target`: locust: the server's base URL; des: null;
- `t0_epoch`: locust: epoch seconds of t = 0; des: null (virtual time has no epoch);
- `versions`, `host`: software versions; the machine (name, platform, CPUs).

A load test adds `role`, `workers`, `locust_requests`, `locust_failures`, `agent_violations`
and `agent_violation_count`.

Modules: `schema` (tables), `rows` (request rows, the one row builder), `hist` (latency
histograms: `LogBins`, `HistGroup`, `hist_table`), `ids` (run ids, default folders),
`manifest`, `rundir` (writing, `finish_run`), `summary` and `hist_summary`, `quantiles` (the
one quantile definition, shared with `sim.report`), `load` (reading).
"""

from __future__ import annotations

from sim.records.hist import HIST_FILE, HIST_SCHEMA, HistGroup, LogBins, hist_table, histograms_from_requests
from sim.records.ids import default_out, run_id_for
from sim.records.load import Run, RunDirError, load_run, with_timestamps
from sim.records.manifest import CLOCKS, new_manifest
from sim.records.quantiles import QUANTILES, grouped_quantiles, positions, quantiles
from sim.records.rows import RequestLog, commands_table, tasks_table
from sim.records.rundir import RunDir, finish_run, is_finished
from sim.records.schema import (
    COMMAND_SCHEMA,
    GENERATOR_SCHEMA,
    OPERATOR_ID,
    REQUEST_SCHEMA,
    SCHEMA_VERSION,
    TABLES,
    TASK_SCHEMA,
)
from sim.records.summary import dispatch_summary, migration_durations, stats, summarize, task_summary

__all__ = [
    "CLOCKS",
    "COMMAND_SCHEMA",
    "HIST_FILE",
    "HIST_SCHEMA",
    "HistGroup",
    "LogBins",
    "GENERATOR_SCHEMA",
    "OPERATOR_ID",
    "QUANTILES",
    "REQUEST_SCHEMA",
    "SCHEMA_VERSION",
    "TABLES",
    "TASK_SCHEMA",
    "RequestLog",
    "Run",
    "RunDir",
    "RunDirError",
    "commands_table",
    "default_out",
    "dispatch_summary",
    "finish_run",
    "grouped_quantiles",
    "hist_table",
    "histograms_from_requests",
    "is_finished",
    "load_run",
    "migration_durations",
    "new_manifest",
    "positions",
    "quantiles",
    "run_id_for",
    "stats",
    "summarize",
    "task_summary",
    "tasks_table",
    "with_timestamps",
]
