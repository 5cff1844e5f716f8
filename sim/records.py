"""Run directories: one schema for simulated and measured runs.

A run directory holds
- `manifest.json`: run id, executor (`des`/`locust`), resolved scenario, seed, versions, host,
  start and end (wall clock), and `complete` (false until the run finished normally);
- `requests.parquet`: one row per request (`REQUEST_SCHEMA`), written in chunks as the run goes;
- `tasks.parquet`: one row per task state transition (and per progress report), from the control plane;
- `commands.parquet`: one row per command queued, with its enqueue, first-delivery and ack times;
- `summary.json`: per endpoint counts, throughput, latency percentiles and error rate; tasks
  completed and migration durations; command-dispatch latency.

`load_run(path)` returns the tables as pandas DataFrames. Times in the tables are seconds
since the run started (`t_*_s`), latencies milliseconds (`*_ms`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from sim import __version__
from sim.model.entities import CommandRecord, TaskEvent

REQUEST_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("executor", pa.string()),
        ("agent_id", pa.int64()),  # -1 is the operator
        ("endpoint", pa.string()),  # the path template, e.g. /v1/sms/sources/{source_id}/command
        ("method", pa.string()),
        ("t_sched_s", pa.float64()),  # when the model meant to send
        ("t_start_s", pa.float64()),  # when it was sent; t_start_s - t_sched_s is the generator's lag
        ("latency_ms", pa.float64()),
        ("status", pa.int32()),  # 0: no response (timeout, refused)
        ("ok", pa.bool_()),
        ("error", pa.string()),  # SMS error code, or the transport failure
        ("command_name", pa.string()),  # the command received (poll) or reported (command_result)
        ("task_id", pa.string()),
        ("queue_wait_ms", pa.float64()),  # simulation: time waiting for a worker (and the write lock)
        ("server_ms", pa.float64()),  # simulation: service time; load test: the Server-Timing header
    ]
)
TASK_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("t_s", pa.float64()),
        ("task_id", pa.string()),
        ("source_id", pa.string()),
        ("from_state", pa.string()),
        ("to_state", pa.string()),
        ("trigger", pa.string()),
        ("subtask", pa.string()),
        ("progress", pa.int32()),
    ]
)
COMMAND_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("seq", pa.int64()),
        ("source_id", pa.string()),
        ("task_id", pa.string()),
        ("command_name", pa.string()),
        ("enqueued_s", pa.float64()),
        ("delivered_s", pa.float64()),
        ("acked_s", pa.float64()),
        ("result", pa.string()),
    ]
)
OPERATOR_ID = -1
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99_9": 99.9}


class RequestLog:
    """Request rows in columns (compact arrays), ready to go to Parquet in chunks."""

    _FLOATS = ("t_sched_s", "t_start_s", "latency_ms", "queue_wait_ms", "server_ms")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.agent_id = array("q")
        self.endpoint: list[str] = []
        self.method: list[str] = []
        self.status = array("i")
        self.error: list[str] = []
        self.command_name: list[str] = []
        self.task_id: list[str] = []
        for name in self._FLOATS:
            setattr(self, name, array("d"))

    def __len__(self) -> int:
        return len(self.agent_id)

    def add(
        self,
        agent_id: int,
        endpoint: str,
        method: str,
        t_sched_s: float,
        t_start_s: float,
        latency_ms: float,
        status: int,
        error: str,
        command_name: str,
        task_id: str,
        queue_wait_ms: float = math.nan,
        server_ms: float = math.nan,
    ) -> None:
        self.agent_id.append(agent_id)
        self.endpoint.append(endpoint)
        self.method.append(method)
        self.t_sched_s.append(t_sched_s)
        self.t_start_s.append(t_start_s)
        self.latency_ms.append(latency_ms)
        self.status.append(status)
        self.error.append(error)
        self.command_name.append(command_name)
        self.task_id.append(task_id)
        self.queue_wait_ms.append(queue_wait_ms)
        self.server_ms.append(server_ms)

    def take(self, run_id: str, executor: str) -> pa.Table:
        """The rows so far as an Arrow table (and forget them: the next chunk starts empty)."""
        n = len(self)
        status = np.frombuffer(self.status, dtype=np.int32) if n else np.empty(0, np.int32)
        floats = {
            name: (np.frombuffer(getattr(self, name), dtype=np.float64) if n else np.empty(0)) for name in self._FLOATS
        }
        columns = {
            "run_id": pa.array([run_id] * n, pa.string()),
            "executor": pa.array([executor] * n, pa.string()),
            "agent_id": pa.array(np.frombuffer(self.agent_id, dtype=np.int64) if n else [], pa.int64()),
            "endpoint": pa.array(self.endpoint, pa.string()),
            "method": pa.array(self.method, pa.string()),
            "t_sched_s": pa.array(floats["t_sched_s"]),
            "t_start_s": pa.array(floats["t_start_s"]),
            "latency_ms": pa.array(floats["latency_ms"]),
            "status": pa.array(status, pa.int32()),
            "ok": pa.array((status >= 200) & (status < 300)),
            "error": pa.array(self.error, pa.string()),
            "command_name": pa.array(self.command_name, pa.string()),
            "task_id": pa.array(self.task_id, pa.string()),
            "queue_wait_ms": pa.array(floats["queue_wait_ms"], from_pandas=True),
            "server_ms": pa.array(floats["server_ms"], from_pandas=True),
        }
        table = pa.Table.from_pydict(columns, schema=REQUEST_SCHEMA)
        self._clear()
        return table


def tasks_table(run_id: str, events: Iterable[TaskEvent], t0: float = 0.0) -> pa.Table:
    ev = list(events)
    return pa.Table.from_pydict(
        {
            "run_id": [run_id] * len(ev),
            "t_s": [e.t - t0 for e in ev],
            "task_id": [e.task_id for e in ev],
            "source_id": [e.source_id for e in ev],
            "from_state": [e.from_state for e in ev],
            "to_state": [e.to_state for e in ev],
            "trigger": [e.trigger for e in ev],
            "subtask": [e.subtask for e in ev],
            "progress": [e.progress for e in ev],
        },
        schema=TASK_SCHEMA,
    )


def commands_table(run_id: str, commands: Iterable[CommandRecord], t0: float = 0.0) -> pa.Table:
    cs = list(commands)

    def rel(t: float | None) -> float | None:
        return None if t is None else t - t0

    return pa.Table.from_pydict(
        {
            "run_id": [run_id] * len(cs),
            "seq": [c.seq for c in cs],
            "source_id": [c.source_id for c in cs],
            "task_id": [c.task_id for c in cs],
            "command_name": [c.name.value for c in cs],
            "enqueued_s": [rel(c.enqueued_at) for c in cs],
            "delivered_s": [rel(c.delivered_at) for c in cs],
            "acked_s": [rel(c.acked_at) for c in cs],
            "result": [c.result for c in cs],
        },
        schema=COMMAND_SCHEMA,
    )


def _versions() -> dict[str, str]:
    out = {"smsload": __version__, "python": sys.version.split()[0]}
    for dist in ("simpy", "locust", "pyarrow", "pandas", "starlette", "granian", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunDir:
    """A run directory being written. Marked incomplete until `finish(complete=True)`."""

    def __init__(
        self,
        path: Path,
        run_id: str,
        executor: str,
        scenario: dict[str, Any],
        seed: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.run_id, self.executor = run_id, executor
        self.manifest: dict[str, Any] = {
            "run_id": run_id,
            "executor": executor,
            "seed": seed,
            "scenario": scenario,
            "versions": _versions(),
            "host": {"name": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
            "started_at": _now_iso(),
            "ended_at": None,
            "complete": False,
            **(extra or {}),
        }
        self._write_manifest()
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def _write_manifest(self) -> None:
        tmp = self.path / "manifest.json.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=2, default=str) + "\n")
        tmp.replace(self.path / "manifest.json")

    def append_requests(self, table: pa.Table) -> None:
        """Write one chunk of request rows (the file stays readable once `close_requests` ran)."""
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path / "requests.parquet", REQUEST_SCHEMA, compression="zstd")
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def close_requests(self) -> None:
        if self._writer is None:
            self.append_requests(REQUEST_SCHEMA.empty_table())
        assert self._writer is not None
        self._writer.close()

    def write_table(self, name: str, table: pa.Table) -> None:
        pq.write_table(table, self.path / f"{name}.parquet", compression="zstd")

    def finish(self, summary: dict[str, Any] | None, complete: bool, **manifest_extra: Any) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if summary is not None:
            (self.path / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        self.manifest.update(manifest_extra, ended_at=_now_iso(), complete=complete, requests=self.rows)
        self._write_manifest()


# -- summaries -----------------------------------------------------------------------------------


def _latency_stats(ms: np.ndarray) -> dict[str, float | None]:
    if ms.size == 0:
        return {k: None for k in [*PERCENTILES, "max", "mean"]}
    q = np.percentile(ms, list(PERCENTILES.values()))
    out: dict[str, float | None] = {k: round(float(v), 4) for k, v in zip(PERCENTILES, q)}
    out["max"] = round(float(ms.max()), 4)
    out["mean"] = round(float(ms.mean()), 4)
    return out


def summarize(requests: pd.DataFrame, tasks: pd.DataFrame, commands: pd.DataFrame, duration_s: float) -> dict[str, Any]:
    """The run's headline figures, computed from its tables (deterministic for the same tables)."""
    endpoints: dict[str, Any] = {}
    # Keyed "METHOD /path/template": POST and GET /v3/sources are different endpoints.
    for (method, endpoint), group in requests.groupby(["method", "endpoint"], sort=True):
        ok = group["ok"].to_numpy()
        stats = _latency_stats(group["latency_ms"].to_numpy(dtype=float))
        endpoints[f"{method} {endpoint}"] = {
            "count": int(len(group)),
            "throughput_per_s": round(len(group) / duration_s, 4),
            "error_rate": round(float(1 - ok.mean()), 6) if len(group) else 0.0,
            "latency_ms": stats,
        }
    total = len(requests)
    lag = (requests["t_start_s"] - requests["t_sched_s"]).to_numpy(dtype=float) * 1000 if total else np.empty(0)
    return {
        "duration_s": duration_s,
        "requests": {
            "count": total,
            "throughput_per_s": round(total / duration_s, 4),
            "error_rate": round(float(1 - requests["ok"].mean()), 6) if total else 0.0,
            "latency_ms": _latency_stats(requests["latency_ms"].to_numpy(dtype=float)),
        },
        "endpoints": endpoints,
        "generator_lag_ms": _latency_stats(lag),
        "tasks": task_summary(tasks),
        "dispatch": dispatch_summary(commands),
    }


def migration_durations(tasks: pd.DataFrame) -> pd.Series:
    """Seconds from each task's first start to its MIGRATE_SUCCESS."""
    starts = tasks[(tasks["trigger"] == "start") & (tasks["from_state"] == "READY")].groupby("task_id")["t_s"].min()
    done = tasks[tasks["to_state"] == "MIGRATE_SUCCESS"].groupby("task_id")["t_s"].min()
    both = pd.concat([starts.rename("start"), done.rename("done")], axis=1).dropna()
    return (both["done"] - both["start"]).sort_index()


def task_summary(tasks: pd.DataFrame) -> dict[str, Any]:
    if tasks.empty:
        return {"created": 0, "migrated": 0, "synced": 0, "failed": 0, "deleted": 0, "migration_s": {}}
    changed = tasks[tasks["from_state"] != tasks["to_state"]]

    def count(state: str) -> int:
        return int(changed.loc[changed["to_state"] == state, "task_id"].nunique())

    durations = migration_durations(tasks).to_numpy(dtype=float)
    return {
        "created": int(tasks.loc[tasks["trigger"] == "create", "task_id"].nunique()),
        "migrated": count("MIGRATE_SUCCESS"),
        "synced": count("SYNC_SUCCESS"),
        "failed": count("MIGRATE_FAIL"),
        "deleted": count("DELETED"),
        "migration_s": {
            k: (None if v is None else round(v / 1000, 3)) for k, v in _latency_stats(durations * 1000).items()
        },
    }


def dispatch_summary(commands: pd.DataFrame) -> dict[str, Any]:
    """Command-dispatch latency: enqueued -> first delivered, delivered -> acknowledged (ms)."""
    if commands.empty:
        return {
            "commands": 0,
            "enqueue_to_deliver_ms": _latency_stats(np.empty(0)),
            "deliver_to_ack_ms": _latency_stats(np.empty(0)),
        }
    deliver = (commands["delivered_s"] - commands["enqueued_s"]).dropna().to_numpy(dtype=float) * 1000
    ack = (commands["acked_s"] - commands["delivered_s"]).dropna().to_numpy(dtype=float) * 1000
    return {
        "commands": int(len(commands)),
        "enqueue_to_deliver_ms": _latency_stats(deliver),
        "deliver_to_ack_ms": _latency_stats(ack),
    }


# -- loading -------------------------------------------------------------------------------------


@dataclass
class Run:
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
