"""Reading a run directory back: `load_run(path)` gives its manifest, summary and tables.

Any run directory loads, complete or not, simulated or measured, and one written before a
manifest field was renamed: the manifest is returned as it is on disk. A run that has not
ended may lack any table (an empty one with its schema stands in); a run that ended without
one of its tables, or with a table that is not readable Parquet (cut short), is a
`RunDirError` naming the file, which `smsload report` and `compare` print as one line.
Tables written before the schema had a version (plain strings, "" for none) are brought to
the current schema (`sim.records.schema.conform`), so every reader sees nulls and
categoricals alike.

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

from sim.records.hist import HIST_FILE, HIST_SCHEMA, LogBins, bins_from_metadata
from sim.records.manifest import t0_epoch_of
from sim.records.schema import COMMAND_SCHEMA, REQUEST_SCHEMA, T0_KEY, TASK_SCHEMA, conform, schema_version

#: The time columns of the tables (seconds since t = 0) that `with_timestamps` turns into UTC times.
TIME_COLUMNS = ("t_sched_s", "t_start_s", "t_s", "enqueued_s", "delivered_s", "acked_s")


@dataclass
class Run:
    """One run directory in memory: manifest and summary as written, tables as DataFrames.

    `histograms` is latency_hist.parquet (`sim.records.hist`; empty with its schema when the
    run has none) and `latency_bins` its buckets: None for a run without histograms.
    """

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    requests: pd.DataFrame
    tasks: pd.DataFrame
    commands: pd.DataFrame
    histograms: pd.DataFrame = field(default_factory=lambda: HIST_SCHEMA.empty_table().to_pandas())
    latency_bins: LogBins | None = None
    t0_epoch: float | None = field(default=None)  # epoch seconds of t = 0 (see `with_timestamps`)

    @property
    def request_count(self) -> int:
        """Requests in the run: counted in its histograms when it has them, else its request rows."""
        if self.latency_bins is not None:
            return int(self.histograms["count"].sum())
        return len(self.requests)


class RunDirError(Exception):
    """Not a readable run directory; the message says what is missing."""


TABLES = ("requests.parquet", "tasks.parquet", "commands.parquet")  # every finished run has these


def _table(path: Path) -> pa.Table:
    """One table of the run, or RunDirError naming the file (a truncated file is not Parquet)."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise RunDirError(f"{path}: cannot read the table (truncated or not Parquet?): {exc}") from None


def _read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    if not path.exists():
        return schema.empty_table().to_pandas()
    table = _table(path)
    return conform(table, schema, legacy=schema_version(table.schema) < 2).to_pandas()


def _read_histograms(path: Path) -> tuple[pd.DataFrame, LogBins | None]:
    if not path.exists():
        return HIST_SCHEMA.empty_table().to_pandas(), None
    table = _table(path)
    return table.to_pandas(), bins_from_metadata(table.schema.metadata)[0]


def _missing_tables(path: Path, manifest: dict[str, Any]) -> list[str]:
    """The tables a finished run must have and this one lacks (an unfinished run may lack any)."""
    if manifest.get("ended_at") is None:
        return []
    needed = [*TABLES, HIST_FILE] if manifest.get("latency_histograms") else list(TABLES)
    return [name for name in needed if not (path / name).is_file()]


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
        missing = _missing_tables(path, manifest)
        if missing:
            raise RunDirError(
                f"{path}: the run ended but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
            )
        summary_path = path / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
        histograms, bins = _read_histograms(path / HIST_FILE)
        return Run(
            path,
            manifest,
            summary,
            _read(path / "requests.parquet", REQUEST_SCHEMA),
            _read(path / "tasks.parquet", TASK_SCHEMA),
            _read(path / "commands.parquet", COMMAND_SCHEMA),
            histograms,
            bins,
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
