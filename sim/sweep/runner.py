"""Running a sweep: each point on a local process pool or a Dask cluster, results kept in sweep.parquet.

OUT holds
- `sweep.json`: the scenario (resolved), the grid (`vary`), replications, engine, duration
  override and SLO, written before the first point runs;
- `points/<key>/`: each point's run directory, as the engine writes it;
- `sweep.parquet`: a row per finished point (`ROW_COLUMNS` plus a column per varied path),
  rewritten whole (to a temporary file, then renamed) after every point, so a reader or an
  interrupted sweep never sees half a table.

A re-run with the same OUT and grid skips the points whose key is in sweep.parquet and runs
the rest (a run directory left by an interrupted point is removed first); a different grid or
scenario in the same OUT is refused. `max_points` stops after that many new points: how a
test (or a cautious user) runs part of a sweep.

Points run in worker processes (`spawn`: a forked copy of a process with a progress thread
can deadlock) or as Dask tasks; both call `run_point`, which needs only picklable
arguments and returns the row. The busy fraction of the workers comes from the engine's
`summary["server"]["busy_fraction"]` when it writes one, else from the requests' service
times: sum(server_ms) / (workers x duration).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sim.scenario import Scenario, validate_scenario
from sim.sweep.engines import load_engine
from sim.sweep.grid import Point, Vary, grid_points

POLL = "GET /v1/sms/sources/{source_id}/command"
SWEEP_JSON, SWEEP_PARQUET, POINTS = "sweep.json", "sweep.parquet", "points"
ROW_COLUMNS = [
    "key",
    "replication",
    "seed",
    "engine",
    "agents",
    "poll_interval_s",
    "workers",
    "duration_s",
    "complete",
    "throughput_per_s",  # polls per second
    "p50_ms",  # poll latency quantiles
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "error_rate",  # all requests
    "busy_fraction",
    "wall_s",
    "run_dir",  # relative to OUT
    "summary_json",  # the run's whole summary.json: any SLO can be evaluated later
]


class SweepError(RuntimeError):
    """A sweep that cannot go on (another sweep in OUT, a point that failed); one line for the user."""


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep: the base scenario, the varied fields, replications, engine, duration override, SLO."""

    scenario: Scenario
    varies: tuple[Vary, ...]
    replications: int = 1
    engine: str = "fast"
    duration_s: float | None = None
    slo: tuple[str, ...] = ()
    points: list[Point] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.points:
            self.points.extend(grid_points(self.scenario, self.varies, self.replications, self.duration_s))

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_dict(),
            "vary": [v.to_dict() for v in self.varies],
            "replications": self.replications,
            "engine": self.engine,
            "duration_s": self.duration_s,
            "slo": list(self.slo),
        }


def run_point(engine: str, scenario: dict[str, Any], out: str) -> dict[str, Any]:
    """Run one point (in a worker process or a Dask task) and return its row of sweep.parquet."""
    run = load_engine(engine)
    scen = validate_scenario(scenario)
    path = Path(out)
    wall0 = time.perf_counter()
    run(scen, path)
    wall_s = time.perf_counter() - wall0
    summary = json.loads((path / "summary.json").read_text())
    manifest = json.loads((path / "manifest.json").read_text())
    poll = summary.get("endpoints", {}).get(POLL, {})
    lat = poll.get("latency_ms", {})
    duration = float(manifest.get("duration_s") or summary.get("duration_s") or scen.duration_s)
    return {
        "seed": scen.seed,
        "engine": engine,
        "agents": scen.fleet.agents,
        "poll_interval_s": float(scen.agent.poll_interval_s),
        "workers": scen.server.workers,
        "duration_s": duration,
        "complete": bool(manifest.get("complete")),
        "throughput_per_s": float(poll.get("throughput_per_s", 0.0)),
        **{f"{q}_ms": _num(lat.get(q)) for q in ("p50", "p95", "p99", "mean")},
        "error_rate": _num(summary.get("requests", {}).get("error_rate")),
        "busy_fraction": busy_fraction(path, summary, scen.server.workers, duration),
        "wall_s": wall_s,
        "summary_json": json.dumps(summary, sort_keys=True),
    }


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def busy_fraction(run_dir: Path, summary: dict[str, Any], workers: int, duration_s: float) -> float:
    """Utilisation of the server's workers: the engine's own figure, else from the requests' service times."""
    given = summary.get("server", {}).get("busy_fraction")
    if given is not None:
        return float(given)
    import pyarrow.parquet as pq

    try:
        column = pq.read_table(run_dir / "requests.parquet", columns=["server_ms"]).column("server_ms")
    except (OSError, KeyError):
        return math.nan
    total = column.to_pandas().sum(min_count=1)
    if pd.isna(total) or duration_s <= 0:
        return math.nan
    return float(total) / 1000.0 / (workers * duration_s)


def load_rows(out: Path) -> pd.DataFrame:
    """The finished points of the sweep in OUT (an empty table when none finished)."""
    path = out / SWEEP_PARQUET
    return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=ROW_COLUMNS)


def _write_rows(out: Path, rows: pd.DataFrame) -> None:
    tmp = out / (SWEEP_PARQUET + ".tmp")
    rows.to_parquet(tmp, index=False)
    tmp.replace(out / SWEEP_PARQUET)


def _claim(out: Path, spec: SweepSpec) -> None:
    """Write sweep.json, or check that the one in OUT describes the same sweep (its SLO may change)."""
    out.mkdir(parents=True, exist_ok=True)
    mine = spec.to_dict()
    path = out / SWEEP_JSON
    if path.exists():
        try:
            theirs = json.loads(path.read_text())
        except ValueError:
            raise SweepError(f"{path} is not readable JSON; choose another --out") from None
        same = ("scenario", "vary", "engine", "duration_s")
        if any(theirs.get(k) != json.loads(json.dumps(mine[k])) for k in same):
            diff = [k for k in same if theirs.get(k) != json.loads(json.dumps(mine[k]))]
            raise SweepError(f"{out} holds another sweep (its {', '.join(diff)} differ); choose another --out")
    elif (out / SWEEP_PARQUET).exists():
        raise SweepError(f"{out} has a sweep.parquet but no sweep.json; choose another --out")
    tmp = out / (SWEEP_JSON + ".tmp")
    tmp.write_text(json.dumps(mine, indent=2) + "\n")
    tmp.replace(path)


Progress = Callable[[int, int, str], None]  # (done, total, key of the point just finished)


def run_sweep(
    spec: SweepSpec,
    out: Path,
    *,
    jobs: int | None = None,
    dask: str | None = None,
    max_points: int | None = None,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Run the points of `spec` not yet in OUT/sweep.parquet; return every finished row.

    `dask` is a scheduler address (tcp://HOST:8786, or a LocalCluster's); without it the points
    run on `jobs` local processes (default: the CPU count). On Ctrl-C the rows finished so far
    stay in sweep.parquet and KeyboardInterrupt propagates.
    """
    out = Path(out)
    load_engine(spec.engine)  # an engine that is not there fails before anything runs
    _claim(out, spec)
    rows = load_rows(out)
    done = set(rows["key"])
    pending = [p for p in spec.points if p.key not in done]
    if max_points is not None:
        pending = pending[:max_points]
    total, finished = len(spec.points), sum(p.key in done for p in spec.points)
    if progress is not None:
        progress(finished, total, "")
    if not pending:
        return rows
    for point in pending:  # what an interrupted point left behind
        shutil.rmtree(out / POINTS / point.key, ignore_errors=True)
    runner = _dask_results if dask else _local_results
    for point, row in runner(spec.engine, pending, out, jobs=jobs, address=dask):
        row.update({"key": point.key, "replication": point.replication, "run_dir": f"{POINTS}/{point.key}"})
        row.update(dict(point.values))
        rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True) if len(rows) else pd.DataFrame([row])
        _write_rows(out, rows)  # after every point: an interruption keeps every finished one
        finished += 1
        if progress is not None:
            progress(finished, total, point.key)
    return rows


def _args(engine: str, point: Point, out: Path) -> tuple[str, dict[str, Any], str]:
    return engine, point.scenario.to_dict(), str(out / POINTS / point.key)


def _local_results(
    engine: str, points: Sequence[Point], out: Path, *, jobs: int | None, address: str | None
) -> Iterator[tuple[Point, dict[str, Any]]]:
    workers = max(1, min(jobs or multiprocessing.cpu_count(), len(points)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    futures: dict[Future[dict[str, Any]], Point] = {}
    try:
        futures = {pool.submit(run_point, *_args(engine, p, out)): p for p in points}
        for fut in as_completed(futures):
            yield futures[fut], _result(fut.result, futures[fut])
    finally:
        for fut in futures:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _dask_results(
    engine: str, points: Sequence[Point], out: Path, *, jobs: int | None, address: str | None
) -> Iterator[tuple[Point, dict[str, Any]]]:
    from distributed import Client
    from distributed import as_completed as dask_completed

    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    futures: dict[Any, Point] = {}
    try:
        futures = {client.submit(run_point, *_args(engine, p, out), pure=False): p for p in points}
        for fut in dask_completed(list(futures)):
            yield futures[fut], _result(fut.result, futures[fut])
    finally:
        client.cancel(list(futures))
        client.close()


def _result(get: Callable[[], dict[str, Any]], point: Point) -> dict[str, Any]:
    try:
        return get()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a point's failure ends the sweep; the finished points are kept
        raise SweepError(f"point {point.key} failed: {type(exc).__name__}: {exc}") from exc
