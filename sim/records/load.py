"""Reading a run directory back: `load_run(path)` gives its manifest, summary and tables.

Any run directory loads, complete or not, simulated or measured, and one written before a
manifest field was renamed: the manifest is returned as it is on disk, and a missing table
is an empty one with its schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim.records.schema import COMMAND_SCHEMA, REQUEST_SCHEMA, TASK_SCHEMA


@dataclass
class Run:
    """One run directory in memory: manifest and summary as written, tables as DataFrames."""

    path: Path
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    requests: pd.DataFrame
    tasks: pd.DataFrame
    commands: pd.DataFrame


class RunDirError(Exception):
    """Not a readable run directory; the message says what is missing."""


def _read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    return pq.read_table(path).to_pandas() if path.exists() else schema.empty_table().to_pandas()


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
        )
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise RunDirError(f"{path}: cannot read the run directory: {exc}") from None
