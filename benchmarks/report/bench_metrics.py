"""Benchmark the report metrics on a synthetic 10-million-row requests table.

    .venv/bin/python benchmarks/report/bench_metrics.py [--rows N] [--resamples N] [--reps N]

The table: `--rows` requests over an hour (uniform start times), five endpoints in a polling
fleet's mix (85 % polls), lognormal latencies per endpoint, 0.1 % errors, every column of
`sim.records.REQUEST_SCHEMA` that the metrics read, built with numpy and converted through
Arrow as `load_run` would return it (string columns are pandas' Arrow-backed `str`).

Measured, each `--reps` times (median reported):

- `metrics`: what a report computes from the requests table: `endpoint_table` (count,
  throughput and error rate with intervals, exact p50 .. max with histogram-bootstrap intervals,
  `--resamples` resamples), `throughput_over_time` per endpoint, `percentiles_over_time`
  for all requests and per endpoint, `generator_lag`, `errors_by_status`;
- `baseline`: plain pandas without intervals, `groupby(["method", "endpoint"])["latency_ms"]
  .quantile([.5, .9, .95, .99, .999])` plus count and max.

Peak memory: the largest extra allocation during one pass of each (tracemalloc, a separate
pass so tracing does not slow the timed ones; numpy reports its buffers to tracemalloc), and
the process's peak RSS at the end (the table included). Also printed: that the report's
percentiles are the exact order statistics (as summary.json's), and what a row-resampling
bootstrap would cost (one resample of the largest endpoint timed, times `--resamples`).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.report import metrics as M

ENDPOINTS = [  # method, template, share of requests, lognormal median (ms), sigma
    ("GET", "/v1/sms/sources/{source_id}/command", 0.85, 2.0, 0.6),
    ("PUT", "/v3/tasks/{task_id}/progress", 0.08, 5.0, 0.8),
    ("POST", "/v1/sms/sources/{source_id}/command_result", 0.03, 4.0, 0.7),
    ("POST", "/v3/sources", 0.02, 20.0, 1.0),
    ("GET", "/v3/tasks/{task_id}", 0.02, 3.0, 0.5),
]
DURATION_S = 3600.0
PROBS = [0.5, 0.9, 0.95, 0.99, 0.999]


def build_table(rows: int, seed: int = 0) -> pd.DataFrame:
    """A requests table as `load_run` returns it (string columns Arrow-backed)."""
    rng = np.random.default_rng(seed)
    which = rng.choice(len(ENDPOINTS), rows, p=[e[2] for e in ENDPOINTS])
    median = np.array([e[3] for e in ENDPOINTS])[which]
    sigma = np.array([e[4] for e in ENDPOINTS])[which]
    latency = median * np.exp(sigma * rng.standard_normal(rows))
    t_sched = np.sort(rng.uniform(0, DURATION_S, rows))
    ok = rng.random(rows) >= 0.001
    status = np.where(ok, 200, 503).astype(np.int32)
    methods = pa.DictionaryArray.from_arrays(pa.array(which, pa.int32()), pa.array([e[0] for e in ENDPOINTS]))
    templates = pa.DictionaryArray.from_arrays(pa.array(which, pa.int32()), pa.array([e[1] for e in ENDPOINTS]))
    table = pa.table(
        {
            "method": methods.cast(pa.string()),
            "endpoint": templates.cast(pa.string()),
            "t_sched_s": t_sched,
            "t_start_s": t_sched + rng.exponential(0.0005, rows),
            "latency_ms": latency,
            "status": status,
            "ok": ok,
            "error": pa.array(np.where(ok, "", "SMS.0503")),
            "queue_wait_ms": pa.nulls(rows, pa.float64()),
            "server_ms": latency * 0.6,
        }
    )
    return table.to_pandas()


def metric_calls(df: pd.DataFrame, resamples: int) -> dict[str, Callable[[], pd.DataFrame]]:
    """What a report computes from the requests table, one call per metric."""
    return {
        "endpoint_table": lambda: M.endpoint_table(df, DURATION_S, n_boot=resamples),
        "throughput_over_time": lambda: M.throughput_over_time(df, DURATION_S),
        "percentiles_over_time": lambda: M.percentiles_over_time(df, duration_s=DURATION_S),
        "percentiles_over_time by endpoint": lambda: M.percentiles_over_time(
            df, duration_s=DURATION_S, by_endpoint=True
        ),
        "generator_lag": lambda: M.generator_lag(df, DURATION_S),
        "errors_by_status": lambda: M.errors_by_status(df),
    }


def run_metrics(df: pd.DataFrame, resamples: int) -> None:
    for call in metric_calls(df, resamples).values():
        call()


def run_baseline(df: pd.DataFrame) -> pd.DataFrame:
    grouped = df.groupby(["method", "endpoint"])["latency_ms"]
    q = grouped.quantile(PROBS).unstack()
    return q.join(grouped.agg(["count", "max"]))


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    t0 = time.perf_counter()
    df = build_table(args.rows)
    print(
        f"table: {len(df):,} rows, {df.memory_usage(deep=True).sum() / 2**20:,.0f} MB in pandas, "
        f"built in {time.perf_counter() - t0:.1f} s"
    )

    # Interleaved repetitions: drift on a shared machine hits both alike.
    parts: dict[str, list[float]] = {}
    metrics_s, baseline_s = [], []
    for _ in range(args.reps):
        baseline_s.append(timed(lambda: run_baseline(df)))
        start = time.perf_counter()
        for name, fn in metric_calls(df, args.resamples).items():
            parts.setdefault(name, []).append(timed(fn))
        metrics_s.append(time.perf_counter() - start)

    for name, times in parts.items():
        print(f"  {name:<36} {statistics.median(times):6.2f} s")
    m, b = statistics.median(metrics_s), statistics.median(baseline_s)
    print(
        f"metrics (all of the above): {m:.2f} s   baseline groupby.quantile, no intervals: {b:.2f} s   "
        f"ratio {m / b:.2f} x   (medians of {args.reps})"
    )
    print(
        f"peak extra memory (tracemalloc): metrics {peak_mb(lambda: run_metrics(df, args.resamples)):,.0f} MB, "
        f"baseline {peak_mb(lambda: run_baseline(df)):,.0f} MB; "
        f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"
    )

    table = M.endpoint_table(df, DURATION_S, n_boot=args.resamples)
    same = True
    for (method, endpoint), latency in df.groupby(["method", "endpoint"])["latency_ms"]:
        # The report's point estimates are the exact order statistics of summary.json (sim.records.quantiles).
        exact = np.quantile(latency.to_numpy(), PROBS, method="inverted_cdf")
        ours = table.loc[f"{method} {endpoint}", ["p50", "p90", "p95", "p99", "p99_9"]].to_numpy(dtype=float)
        same = same and bool(np.array_equal(ours, exact))
    poll = table.iloc[0]
    print(
        f"report percentiles equal numpy's inverted_cdf order statistics on every endpoint: {same}; "
        f"e.g. {table.index[0]} p99 {poll['p99']:.3f} ms, 95% CI {poll['p99_lo']:.3f} .. {poll['p99_hi']:.3f}"
    )

    largest = df.loc[df["endpoint"] == ENDPOINTS[0][1], "latency_ms"].to_numpy()
    rng = np.random.default_rng(1)
    one = timed(lambda: np.quantile(largest[rng.integers(0, len(largest), len(largest))], PROBS))
    print(
        f"row bootstrap for comparison: one resample of {len(largest):,} rows {one:.2f} s, "
        f"x {args.resamples} resamples = {one * args.resamples:,.0f} s for that endpoint alone"
    )


if __name__ == "__main__":
    main()
