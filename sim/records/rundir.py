"""Writing a run directory: `RunDir` while the run goes, `finish_run` at its end, for every executor.

The request rows reach `requests.parquet` in chunks as the run goes (an interrupted run
keeps what it wrote). An engine that counts requests instead of writing them
(`sim.records.hist`) writes `latency_hist.parquet` with `write_histograms`. `finish_run` is
the one end of a run, simulated or measured: it closes the request table, writes the task
and command tables, computes summary.json from the tables on disk (from the histograms when
the run has them) and closes the manifest with the fields every run has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sim.records.hist import HIST_FILE, HIST_SCHEMA, bins_from_metadata, hist_metadata
from sim.records.hist_summary import summarize_histograms
from sim.records.ids import run_id_for
from sim.records.load import load_run
from sim.records.manifest import new_manifest, now_iso, t0_epoch_of
from sim.records.schema import REQUEST_SCHEMA, TABLES, file_schema
from sim.records.summary import summarize
from sim.records.unfinished import LISTED_AT_MOST, stuck_after_s, unfinished_tasks
from sim.scenario import Scenario


class RunDir:
    """A run directory being written. Marked incomplete until finished with `complete=True`."""

    def __init__(
        self,
        path: Path,
        scenario: Scenario,
        executor: str,
        *,
        run_id: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Create the directory and its manifest; `fields` win over the defaults (see `new_manifest`)."""
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.executor = executor
        self.manifest = new_manifest(scenario, executor, run_id or run_id_for(scenario, executor), fields)
        self.run_id: str = self.manifest["run_id"]
        # Epoch seconds of t = 0 in every table's metadata: a load test's. A simulation's clock is virtual
        # and its tables are byte-identical for the same scenario and seed, so they carry no wall-clock time.
        self.t0_epoch = t0_epoch_of(self.manifest) if self.manifest.get("clock") == "wall" else None
        self._write_manifest()
        self._writer: pq.ParquetWriter | None = None
        self._closed = False
        self.rows = 0
        self.counted: int | None = None  # requests counted in latency_hist.parquet; None: no histograms

    def _write_manifest(self) -> None:
        tmp = self.path / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str) + "\n")
        tmp.replace(self.path / "manifest.json")  # a reader never sees half a manifest

    def append_requests(self, table: pa.Table) -> None:
        """Write one chunk of request rows (the file is readable once `close_requests` ran)."""
        if self._closed:
            raise RuntimeError(f"{self.path}: the request table is already closed")
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.path / "requests.parquet", self.file_schema("requests"), compression="zstd"
            )
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close_requests(self) -> None:
        """Close requests.parquet (an empty one if no chunk came); later calls do nothing."""
        if self._closed:
            return
        if self._writer is None:
            self.append_requests(REQUEST_SCHEMA.empty_table())
        assert self._writer is not None
        self._writer.close()
        self._writer, self._closed = None, True

    def write_histograms(self, table: pa.Table) -> None:
        """Write latency_hist.parquet (a `sim.records.hist.hist_table`) and say so in the manifest.

        The manifest's `latency_histograms` gets the bins, their relative error and `bin_s`;
        its `requests` becomes the number of requests the histograms count.
        """
        if table.schema.remove_metadata() != HIST_SCHEMA:
            raise ValueError(f"{self.path}: write_histograms needs a table of HIST_SCHEMA, got {table.schema}")
        bins, bin_s = bins_from_metadata(table.schema.metadata)
        pq.write_table(table, self.path / HIST_FILE, compression="zstd")
        self.counted = int(pc.sum(table["count"]).as_py() or 0)
        self.manifest["latency_histograms"] = hist_metadata(bins, bin_s)
        self._write_manifest()

    def file_schema(self, name: str) -> pa.Schema:
        """Table `name`'s schema with the metadata of this run's files (schema version, t0, clock)."""
        return file_schema(name, self.t0_epoch, self.manifest.get("clock"))

    def write_table(self, name: str, table: pa.Table) -> None:
        """Write a whole table (NAME.parquet); a table of `TABLES` gets the run's metadata."""
        if name in TABLES:
            table = table.replace_schema_metadata(self.file_schema(name).metadata)
        pq.write_table(table, self.path / f"{name}.parquet", compression="zstd")

    def finish(self, summary: dict[str, Any] | None, complete: bool, **fields: Any) -> None:
        """Write summary.json (if given) and close the manifest with `fields`, the end time and `complete`."""
        self.close_requests()
        if summary is not None:
            (self.path / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        requests = self.rows if self.counted is None else self.counted
        self.manifest.update(fields, ended_at=now_iso(), complete=complete, requests=requests)
        self._write_manifest()


def finish_run(
    run: RunDir,
    *,
    complete: bool,
    duration_s: float,
    wall_s: float,
    tasks: pa.Table,
    commands: pa.Table,
    server_tables: str,
    fields: dict[str, Any] | None = None,
    extra_summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """End a run: its tables, summary.json and the closing manifest fields; returns the summary.

    `duration_s` is the run's length in its own clock (virtual for a simulation), `wall_s`
    the wall-clock seconds it took; `server_tables` says where the task and command tables
    came from; `fields` are executor-specific manifest fields; `extra_summary` is merged into
    summary.json at the top level (e.g. an engine's `server` figures: busy fraction, ...).
    A run with latency_hist.parquet gets its request figures from the histograms
    (`sim.records.hist_summary`).
    """
    run.close_requests()
    run.write_table("tasks", tasks)
    run.write_table("commands", commands)
    loaded = load_run(run.path)
    length = max(duration_s, 1e-9)
    if loaded.latency_bins is not None:
        summary = summarize_histograms(loaded.histograms, loaded.latency_bins, loaded.tasks, loaded.commands, length)
    else:
        summary = summarize(loaded.requests, loaded.tasks, loaded.commands, length)
    unfinished = unfinished_tasks(
        loaded.tasks, loaded.requests, loaded.commands, length, stuck_after := stuck_after_s(run.manifest["scenario"])
    )
    summary["tasks"].update(
        stuck=sum(u["stuck"] for u in unfinished),
        stuck_after_s=stuck_after,
        unfinished=unfinished[:LISTED_AT_MOST],
        unfinished_count=len(unfinished),
    )
    summary.update(extra_summary or {})
    run.finish(
        summary,
        complete,
        duration_s=round(duration_s, 6),
        wall_s=round(wall_s, 3),
        server_tables=server_tables,
        **(fields or {}),
    )
    return summary


def is_finished(path: Path) -> bool:
    """True when the run directory's manifest records an end (complete or not)."""
    try:
        return json.loads((Path(path) / "manifest.json").read_text()).get("ended_at") is not None
    except (OSError, ValueError, AttributeError):
        return False
