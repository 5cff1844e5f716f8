"""A load test's run directory: opened when the test starts, finished when Locust quits.

The directory is written by `sim.records` as a simulation's is (the same tables, manifest
fields and summary), plus `generator.parquet` (the load generator's own CPU and memory, one
row per process a second). `tasks.parquet` and `commands.parquet` come from the server's
store when the load test can read it (the embedded reference server's SQLite file); against
any other server they are empty, and the manifest's `server_tables` says so.

`finish_run` is also the fallback of `smsload load` when Locust could not finish the directory
itself (it was killed, or never started): it merges whatever parts arrived and marks the run
incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtests.recorder import EXECUTOR, merge_parts
from sim import records
from sim.records import COMMAND_SCHEMA, TASK_SCHEMA, RunDir, commands_table, is_finished, run_id_for, tasks_table
from sim.scenario import Scenario

NO_SERVER_TABLES = "empty: the load generator cannot see an external server's store (locust --sms-db URL reads one)"

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


def _server_tables(run: RunDir, store_url: str | None, t0: float) -> tuple[Any, Any, str]:
    """The task and command tables, and where they came from."""
    events: list[Any] = []
    commands: list[Any] = []
    source = NO_SERVER_TABLES
    if store_url and not (store_url.startswith("sqlite:///") and not Path(store_url[10:]).exists()):
        from sim.server.stores import open_store

        try:
            store = open_store(store_url)
            try:
                events, commands = store.events(), store.commands()
            finally:
                store.close()
            source = "the server's store"
        except Exception as exc:  # a store we cannot read leaves the request table intact
            source = (
                f"empty: cannot read the server's store: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            )
    tasks = tasks_table(run.run_id, events, t0=t0) if events else TASK_SCHEMA.empty_table()
    cmds = commands_table(run.run_id, commands, t0=t0) if commands else COMMAND_SCHEMA.empty_table()
    return tasks, cmds, source


def finish_run(
    run: RunDir, *, complete: bool, t0: float, duration_s: float, store_url: str | None, extra: dict[str, Any]
) -> None:
    """Merge the parts, add the server's tables, and finish the run as every executor does."""
    merge_parts(run)
    tasks, commands, source = _server_tables(run, store_url, t0)
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
