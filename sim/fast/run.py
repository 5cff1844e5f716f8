"""`run_fast`: simulate a scenario's polling plane with the compiled engine and write its run directory.

The run directory has the schema of every run (`sim.records`), with the request rows
replaced by latency histograms (`latency_hist.parquet`: exact counts per endpoint, outcome
and time bin, latencies in 1 % log buckets), which `report`, `compare` and the notebooks
read. The task and command tables are empty: the fast engine models no operator. Its
manifest lists what was left out (`not_modelled`), and summary.json carries the server's
figures (`server`: busy fraction of the workers, the write lock's, writes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sim.fast.engine import BINS, ENDPOINT_NAMES, OUTCOMES, FastResult, simulate
from sim.fast.scope import not_modelled
from sim.records import COMMAND_SCHEMA, TASK_SCHEMA, RunDir, finish_run
from sim.records.hist import HistGroup, hist_table
from sim.scenario import Scenario

EXECUTOR = "fast"
SERVER_TABLES = "not modelled: the fast engine simulates the polling plane only"


def groups() -> list[HistGroup]:
    """The histogram groups of a fast run, in the kernel's order (endpoint-major, then outcome)."""
    return [HistGroup(name, status, error) for name in ENDPOINT_NAMES for status, error in OUTCOMES]


def run_fast(scenario: Scenario, out: Path, *, progress: Callable[[float, float], None] | None = None) -> Path:
    """Simulate `scenario`'s polling plane; write and return the run directory `out`.

    `progress(now_s, duration_s)` every 1 % of virtual time. On Ctrl-C the directory is still
    written, with what was simulated so far, and marked incomplete.
    """
    left_out = not_modelled(scenario)
    run = RunDir(out, scenario, EXECUTOR, fields={"not_modelled": left_out})
    result: FastResult | None = None
    try:
        result = simulate(scenario, progress=progress)
    finally:
        write_result(run, result)
    return out


def write_result(run: RunDir, result: FastResult | None) -> None:
    """The histograms, empty server tables, summary.json and the closing manifest of a fast run."""
    if result is not None:
        run.write_histograms(hist_table(run.run_id, EXECUTOR, groups(), result.bin_s, result.counts, BINS))
    finish_run(
        run,
        complete=result is not None and result.complete,
        duration_s=result.duration_s if result is not None else 0.0,
        wall_s=result.wall_s if result is not None else 0.0,
        tasks=TASK_SCHEMA.empty_table(),
        commands=COMMAND_SCHEMA.empty_table(),
        server_tables=SERVER_TABLES,
        extra_summary={"server": {"workers": result.workers, **result.stats}} if result is not None else None,
    )
