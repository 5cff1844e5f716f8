"""A load test's run directory: opened when the test starts, finished when Locust quits.

The directory is written by `sim.records` as a simulation's is (the same tables, manifest
fields and summary), plus `generator.parquet` (the load generator's own CPU and memory, one
row per process a second). `tasks.parquet` and `commands.parquet` come from the server's
export API when it has one (the reference server), else from the agents' and operator's
request rows (`loadtests.export`); the manifest's `server_tables` says which.

`finish_run` is also the fallback of `smsload load` when Locust could not finish the directory
itself (it was killed, or never started): it merges whatever parts arrived and marks the run
incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from loadtests.export import server_tables
from loadtests.recorder import EXECUTOR, merge_parts
from sim import records
from sim.records import RunDir, is_finished, run_id_for
from sim.scenario import Scenario

__all__ = ["default_out", "finish_run", "is_finished", "open_run", "reopen_run"]


def default_out(scenario: Scenario) -> Path:
    """Where a run goes without --out: runs/NAME-locust-TIMESTAMP, as `smsload sim` does for `des`."""
    return records.default_out(scenario, EXECUTOR)


def open_run(path: Path, scenario: Scenario, run_id: str, fields: dict[str, Any]) -> RunDir:
    """Start a run directory (manifest marked incomplete). `fields` must never hold a token."""
    return RunDir(path, scenario, EXECUTOR, run_id=run_id, fields=fields)


def reopen_run(path: Path, scenario: Scenario, fields: dict[str, Any]) -> RunDir:
    """A run directory Locust left unfinished (or never started), ready for `finish_run`."""
    manifest_path = Path(path) / "manifest.json"
    previous: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = {}  # a torn manifest: start it again
    run_id = previous.get("run_id") or run_id_for(scenario, EXECUTOR)
    # The old manifest wins over the defaults (its start time, its t0), `fields` over both.
    return RunDir(path, scenario, EXECUTOR, run_id=run_id, fields={**previous, **fields})


def finish_run(run: RunDir, *, complete: bool, t0: float, duration_s: float, token: str, extra: dict[str, Any]) -> None:
    """Merge the parts, add the task and command tables, and finish the run as every executor does.

    The tables are asked of the manifest's `target` with `token` (never written anywhere).
    """
    merge_parts(run)
    requests = pq.read_table(run.path / "requests.parquet").to_pandas()
    tasks, commands, source = server_tables(run.run_id, run.manifest.get("target"), token, t0, requests)
    records.finish_run(
        run,
        complete=complete,
        duration_s=duration_s,
        wall_s=duration_s,  # a load test's clock is the wall clock
        tasks=tasks,
        commands=commands,
        server_tables=source,
        fields=extra,
    )
