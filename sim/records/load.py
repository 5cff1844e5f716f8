"""Reading a run directory back: `load_run(path)` gives its manifest, summary and tables.

Any run directory loads, complete or not, simulated or measured, and one written before a
manifest field was renamed: the manifest is returned as it is on disk, and a missing table
is an empty one with its schema. Tables written before the schema had a version (plain
strings, "" for none) are brought to the current schema (`sim.records.schema.conform`), so
every reader sees nulls and categoricals alike.

`with_timestamps(df, run)` adds absolute UTC times to any of the tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.records.manifest import t0_epoch_of
from sim.records.schema import COMMAND_SCHEMA, REQUEST_SCHEMA, T0_KEY, TASK_SCHEMA, conform, schema_version

#: The time columns of the tables (seconds since t = 0) that `with_timestamps` turns into UTC times.
TIME_COLUMNS = ("t_sched_s", "t_start_s", "t_s", "enqueued_s", "delivered_s", "acked_s")


@dataclass
class Run:
    """One run directory in memory: manifest and summary as written, tables as DataFrames."""

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    requests: pd.DataFrame
    tasks: pd.DataFrame
    commands: pd.DataFrame
    t0_epoch: float | None = field(default=None)  # epoch seconds of t = 0 (see `with_timestamps`)


class RunDirError(Exception):
    """Not a readable run directory; the message says what is missing."""


def _read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    if not path.exists():
        return schema.empty_table().to_pandas()
    table = pq.read_table(path)
    return conform(table, schema, legacy=schema_version(table.schema) < 2).to_pandas()


def _t0_epoch(path: Path, manifest: dict[str, Any]) -> float | None:
    """t = 0 from requests.parquet's metadata, else from the manifest (runs written before it was there)."""
    file = path / "requests.parquet"
    if file.exists():
        value = (pq.read_schema(file).metadata or {}).get(T0_KEY)
        if value:
            return float(value)
    return t0_epoch_of(manifest)


def load_run(path: str | Path) -> Run:
    """Load a run directory (complete or not) as DataFrames."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise RunDirError(f"{path} is not a run directory (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("manifest.json is not a JSON object")
        summary_path = path / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        return Run(
            path,
            manifest,
            summary,
            _read(path / "requests.parquet", REQUEST_SCHEMA),
            _read(path / "tasks.parquet", TASK_SCHEMA),
            _read(path / "commands.parquet", COMMAND_SCHEMA),
            _t0_epoch(path, manifest),
        )
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise RunDirError(f"{path}: cannot read the run directory: {exc}") from None


def with_timestamps(df: pd.DataFrame, run: Run | float) -> pd.DataFrame:
    """A copy of `df` (any table of `run`) with a UTC time column beside each time column.

    `t_start_s` gets `t_start_utc`, `t_s` gets `t_utc`, `acked_s` gets `acked_utc` and so on
    (pandas `datetime64[ns, UTC]`; null where the time is null). `run` is a loaded `Run` or
    the epoch seconds of its t = 0. For a load test t = 0 is when the test started; for a
    simulation, whose clock is virtual, it is when the simulation was started, so its times
    are placed on that date but are not times anything happened.
    """
    t0 = run if isinstance(run, (int, float)) else run.t0_epoch
    if t0 is None:
        raise ValueError("the run records no start time (no t0_epoch or started_at): cannot add timestamps")
    out = df.copy()
    start = pd.Timestamp(float(t0), unit="s", tz="UTC")
    for name in TIME_COLUMNS:
        if name in out.columns:
            at = out.columns.get_loc(name) + 1
            utc = start + pd.to_timedelta(out[name].astype("float64"), unit="s")
            out.insert(at, name.removesuffix("_s") + "_utc", utc)
    return out
