"""Everything a report shows about one run, computed once: `analyze_run(path)`.

This is the seam between the metrics (DataFrames in, DataFrames out) and the pages: a
notebook, `smsload report`, `smsload compare` and calibration all start from a
`RunAnalysis`. The bootstrap seed defaults to one derived from the run id, so a run's
intervals are the same wherever they are shown, and two different runs draw independent
resamples.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from sim.records import Run, load_run
from sim.report import figures as F
from sim.report import metrics as M
from sim.report.hist import N_BOOT, GroupHistograms
from sim.report.histrun import hist_analysis, hist_note
from sim.report.server_view import client_series, load_server_metrics, server_figure, server_series

ERROR_RATE_WARNING = 0.01  # a reader must be told when more than 1 % of requests failed


@dataclass
class RunAnalysis:
    """The metric tables of one run (see `sim.report.metrics` for each table's columns)."""

    run: Run
    duration_s: float
    seed: int
    generator: pd.DataFrame | None  # generator.parquet of a load test; None when the run has none
    endpoints: pd.DataFrame  # endpoint_table: per endpoint and ALL, with intervals
    errors: pd.DataFrame  # errors_by_status
    latency_hist: GroupHistograms  # latency per endpoint (for CDFs and comparisons)
    throughput: pd.DataFrame  # throughput_over_time per endpoint (requests, errors, error rate), 1 s bins
    latency: pd.DataFrame  # percentiles_over_time, all requests, 1 s bins
    latency_by_endpoint: pd.DataFrame  # percentiles_over_time per endpoint, 1 s bins
    queue_wait: pd.DataFrame  # value_table of queue_wait_ms (empty for a load test)
    queue_wait_series: pd.DataFrame  # percentiles_over_time of queue_wait_ms
    server_time: pd.DataFrame  # value_table of server_ms (simulated service time, or Server-Timing)
    lag: pd.DataFrame  # generator_lag, 1 s bins
    tasks_by_state: pd.DataFrame
    lifecycle: pd.DataFrame  # lifecycle_table
    dispatch: pd.DataFrame  # dispatch_table
    dispatch_latency: pd.DataFrame  # per command
    warnings: list[str] = field(default_factory=list)  # what a reader must see first
    notes: list[str] = field(default_factory=list)  # what is missing from this run, and why
    # server_series of server.parquet (a load test's scrapes of the target's /metrics), None without one
    server_view: pd.DataFrame | None = None

    @property
    def executor(self) -> str:
        return str(self.run.manifest.get("executor", "?"))

    @property
    def run_id(self) -> str:
        return str(self.run.manifest.get("run_id", self.run.path.name))


def bootstrap_seed(run_id: str) -> int:
    """The default bootstrap seed of a run: stable for a run id, different between runs."""
    return zlib.crc32(run_id.encode())


def run_duration_s(run: Run) -> float:
    """The run's length in seconds: from its summary or manifest, else the span of its requests."""
    for source, key in ((run.summary or {}, "duration_s"), (run.manifest, "duration_s")):
        value = source.get(key)
        if isinstance(value, (int, float)) and value > 0:
            return float(value)
    r = run.requests
    if len(r):
        return float(max((r["t_start_s"] + r["latency_ms"].fillna(0) / 1000).max(), 1e-9))
    return float((run.manifest.get("scenario") or {}).get("duration_s") or 1.0)


def load_generator(path: Path) -> pd.DataFrame | None:
    """A load test's generator samples (t_s, process, cpu_percent, rss_mb, users, ...), or None if absent."""
    file = Path(path) / "generator.parquet"
    return pq.read_table(file).to_pandas() if file.is_file() else None


def analyze_run(run: Run | str | Path, *, n_boot: int = N_BOOT, seed: int | None = None) -> RunAnalysis:
    """Load a run directory (or take a loaded `Run`) and compute every table, warning and note."""
    run = run if isinstance(run, Run) else load_run(run)
    duration = run_duration_s(run)
    run_id = str(run.manifest.get("run_id", run.path.name))
    seed = bootstrap_seed(run_id) if seed is None else seed
    if run.latency_bins is not None:  # a histogram run (sim.records.hist): its metrics are read off the counts
        tables = hist_analysis(run, duration, n_boot=n_boot, seed=seed)
        a = RunAnalysis(run=run, duration_s=duration, seed=seed, generator=load_generator(run.path), **tables)
        a.server_view = _server_view(run.path)
        a.warnings, a.notes = _warnings(a), _notes(a)
        return a
    req = run.requests
    codes = M.endpoint_codes(req)
    a = RunAnalysis(
        run=run,
        duration_s=duration,
        seed=seed,
        generator=load_generator(run.path),
        endpoints=M.endpoint_table(req, duration, n_boot=n_boot, seed=seed),
        errors=M.errors_by_status(req),
        latency_hist=M.endpoint_histograms(req, codes=codes),
        throughput=M.throughput_over_time(req, duration),
        latency=M.percentiles_over_time(req, duration_s=duration),
        latency_by_endpoint=M.percentiles_over_time(req, duration_s=duration, by_endpoint=True),
        queue_wait=M.value_table(req, "queue_wait_ms", n_boot=n_boot, seed=seed, codes=codes),
        queue_wait_series=M.percentiles_over_time(req, "queue_wait_ms", duration),
        server_time=M.value_table(req, "server_ms", n_boot=n_boot, seed=seed, codes=codes),
        lag=M.generator_lag(req, duration),
        tasks_by_state=M.tasks_by_state(run.tasks, duration),
        lifecycle=M.lifecycle_table(run.tasks, n_boot=n_boot, seed=seed),
        dispatch=M.dispatch_table(run.commands, n_boot=n_boot, seed=seed),
        dispatch_latency=M.dispatch_latency(run.commands),
        server_view=_server_view(run.path),
    )
    a.warnings, a.notes = _warnings(a), _notes(a)
    return a


def _server_view(path: Path) -> pd.DataFrame | None:
    samples = load_server_metrics(path)
    return None if samples is None or samples.empty else server_series(samples)


def _warnings(a: RunAnalysis) -> list[str]:
    out = []
    if not a.run.manifest.get("complete", False):
        out.append(
            "Run incomplete: it was interrupted or did not finish (manifest `complete: false`); "
            "the tables hold the run only as far as it got."
        )
    if a.run.request_count == 0:
        out.append("No requests were recorded in this run.")
    if M.ALL in a.endpoints.index:
        total = a.endpoints.loc[M.ALL]
        if total["error_rate"] > ERROR_RATE_WARNING:
            out.append(
                f"Errors: {total['error_rate']:.2%} of requests failed ({int(total['errors']):,} of "
                f"{int(total['count']):,}), above 1%."
            )
    bad = a.endpoints[(a.endpoints.index != M.ALL) & (a.endpoints["error_rate"] > ERROR_RATE_WARNING)]
    for endpoint, row in bad.iterrows():
        out.append(f"Errors on {endpoint}: {row['error_rate']:.2%} ({int(row['errors']):,} of {int(row['count']):,}).")
    for reason in M.generator_saturation(a.lag, a.generator):
        out.append(
            f"Load generator saturated: {reason}. Latency and throughput then describe the generator, "
            "not only the server."
        )
    return out


def _notes(a: RunAnalysis) -> list[str]:
    out = []
    if a.run.latency_bins is not None:
        out.append(hist_note(a.run.latency_bins))
        out.append(
            "Not drawn for a histogram run (it has no request rows): the load generator's lag, per-agent "
            "figures, queue wait and server time."
        )
    if a.executor == "fast":
        out.append("Simulation by the compiled polling engine: requests leave exactly when the model schedules them.")
    elif a.executor == "des":
        out.append(
            "Simulation: requests leave exactly when the model schedules them, so there is no generator "
            "lag or CPU to report; queue wait is the time a request waited for a server worker."
        )
    elif a.generator is None:
        out.append(
            "No generator.parquet in this run: the load generator's CPU was not recorded; saturation "
            "is judged from the lag alone."
        )
    if a.executor == "locust" and a.server_view is None:
        out.append(
            "No server.parquet: the target's /metrics was not scraped (it has none, or the run was not "
            "made by `smsload load`), so only the client's view is shown."
        )
    if a.run.tasks.empty:
        why = a.run.manifest.get("server_tables") or "the run recorded no task events"
        out.append(f"No task or command tables: {why}.")
    if a.queue_wait.empty and a.executor not in ("des", "fast") and a.run.latency_bins is None:
        out.append(
            "No queue wait: a load test cannot see the server's queue (`queue_wait_ms` is null); "
            "server time comes from the Server-Timing header."
        )
    return out


def shows_generator(a: RunAnalysis) -> bool:
    """Whether the generator figure says anything: a load test, or any lag at all (never for a histogram run)."""
    if a.run.latency_bins is not None:
        return False
    return a.executor != "des" or a.generator is not None or bool(np.nan_to_num(a.lag["max"].to_numpy()).any())


def report_figures(a: RunAnalysis) -> list[Figure]:
    """The figures of a run's report, in page order (each one's title is its alt text)."""
    figs = [
        F.throughput_figure(a.throughput),
        F.error_rate_figure(a.throughput),
        F.percentiles_figure(a.latency),
        F.endpoint_percentiles_figure(a.latency_by_endpoint),
        F.latency_cdf_figure(a.latency_hist),
        F.tasks_by_state_figure(a.tasks_by_state),
        F.dispatch_figure(a.dispatch_latency),
    ]
    if not a.queue_wait.empty:
        figs.append(
            F.percentiles_figure(
                a.queue_wait_series,
                title="Queue wait over time (simulated server)",
                ylabel="wait for a worker (ms)",
                yscale="symlog",
            )
        )
    if shows_generator(a):
        figs.append(F.generator_figure(a.lag, a.generator))
    if a.server_view is not None and a.run.latency_bins is None:
        figs.append(server_figure(a.server_view, client_series(a.run.requests)))
    return figs
