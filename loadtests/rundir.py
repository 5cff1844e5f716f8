"""A load test's run directory: opened when the test starts, finished when Locust quits.

The directory has the simulation's layout (`sim/records.py`), so `load_run` reads both, plus
`generator.parquet` (the load generator's own CPU and memory, one row per process a second).
`tasks.parquet` and `commands.parquet` come from the server's store when the load test can
read it (the embedded reference server's SQLite file); against any other server they are
empty, and the manifest's `server_tables` says so.

`finish_run` is also the fallback of `smsload load` when Locust could not finish the directory
itself (it was killed, or never started): it merges whatever parts arrived and marks the run
incomplete.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtests.recorder import EXECUTOR, merge_parts
from sim.records import COMMAND_SCHEMA, TASK_SCHEMA, RunDir, commands_table, load_run, summarize, tasks_table
from sim.scenario import Scenario

NO_SERVER_TABLES = "empty: the load generator cannot see an external server's store (locust --sms-db URL reads one)"


def new_run_id(scenario: Scenario) -> str:
    """Unique per load test (a measurement is never repeated exactly, unlike a seeded simulation)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{scenario.name}-{EXECUTOR}-{stamp}-{secrets.token_hex(3)}"


def default_out(scenario: Scenario) -> Path:
    """Where a run goes without --out: runs/NAME-locust-TIMESTAMP, as `smsload sim` does for `des`."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{scenario.name}-{EXECUTOR}-{stamp}"


def open_run(path: Path, scenario: Scenario, run_id: str, extra: dict[str, Any]) -> RunDir:
    """Start a run directory (manifest marked incomplete). `extra` must never hold a token."""
    return RunDir(path, run_id, EXECUTOR, scenario.to_dict(), scenario.seed, extra=extra)


def reopen_run(path: Path, scenario: Scenario, extra: dict[str, Any]) -> RunDir:
    """A run directory Locust left unfinished (or never started), ready for `finish_run`."""
    manifest_path = Path(path) / "manifest.json"
    previous: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            previous = json.loads(manifest_path.read_text())
        except ValueError:
            previous = {}  # a torn manifest: start it again
    run_id = previous.get("run_id") or new_run_id(scenario)
    # The old manifest wins over the defaults (its start time, its t0), `extra` over both.
    return RunDir(path, run_id, EXECUTOR, scenario.to_dict(), scenario.seed, extra={**previous, **extra})


def is_finished(path: Path) -> bool:
    """True when the manifest records an end (complete or not)."""
    try:
        return json.loads((Path(path) / "manifest.json").read_text()).get("ended_at") is not None
    except (OSError, ValueError):
        return False


def _server_tables(run: RunDir, store_url: str | None, t0: float) -> str:
    """Write tasks.parquet and commands.parquet; say where they came from."""
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
    run.write_table("tasks", tasks_table(run.run_id, events, t0=t0) if events else TASK_SCHEMA.empty_table())
    run.write_table(
        "commands", commands_table(run.run_id, commands, t0=t0) if commands else COMMAND_SCHEMA.empty_table()
    )
    return source


def finish_run(
    run: RunDir, *, complete: bool, t0: float, duration_s: float, store_url: str | None, extra: dict[str, Any]
) -> None:
    """Merge the parts, add the server's tables and the summary, and close the manifest."""
    merge_parts(run)
    source = _server_tables(run, store_url, t0)
    loaded = load_run(run.path)
    summary = summarize(loaded.requests, loaded.tasks, loaded.commands, max(duration_s, 1e-9))
    run.finish(summary, complete, server_tables=source, duration_s=round(duration_s, 3), **extra)
