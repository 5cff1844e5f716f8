"""Request rows and load-generator samples, from Locust's events to part files on disk.

Every Locust process keeps a `Recorder`: each request event becomes one row of
`sim.records.REQUEST_SCHEMA`, built by `RequestLog.add_call` from the agent's `Call` and
`Outcome` exactly as the simulation builds its rows, and once a second the process samples
its own CPU and memory. Rows and samples leave the process in chunks:

- a standalone process writes them into the run directory's `parts/` every second;
- a worker attaches them to the stats report it sends its master (`report_to_master`), so a
  chunk of rows travels in the very message that carries Locust's counts of the same
  requests: whatever reaches the master's statistics reaches the table, and nothing else.
  The master writes each chunk into `parts/`, which also works with workers on other machines.

`merge_parts` joins the parts into `requests.parquet` and `generator.parquet` at the end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from loadtests.driver import Note, server_ms, transport_error
from sim.model.intents import Outcome
from sim.records import GENERATOR_SCHEMA, REQUEST_SCHEMA, RequestLog, RunDir

EXECUTOR = "locust"
PARTS = "parts"
OTHER_USER_ID = -2  # agent_id of a request from a user class that is not ours (a benchmark's plain user)


class Recorder:
    """One process's request rows and generator samples, until they are taken in a chunk."""

    def __init__(self, process: str) -> None:
        self.process = process
        self.t0 = 0.0  # epoch seconds of the run's start, set when the test starts
        self.run_id = ""
        self.log = RequestLog()
        self._samples: list[tuple[float, str, float, float, int, float, float]] = []
        self._ps = psutil.Process()
        self._ps.cpu_percent(None)  # the first readings only start the measurements
        psutil.cpu_percent(None)

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response: Any = None,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        """Locust's `request` event: one row, with the exact latency Locust measured."""
        t0 = self.t0
        start = time.time() - response_time / 1000.0 if start_time is None else start_time
        status = int(getattr(response, "status_code", 0) or 0)
        headers = getattr(response, "headers", None)
        timing = headers.get("server-timing") if headers is not None else None
        note = context.get("sms") if context else None
        if isinstance(note, Note):
            # No outcome: the user failed before decoding the response; the row still counts the request.
            outcome = note.outcome or Outcome(
                status, None, response_time / 1000.0, transport_error(exception) if status == 0 else ""
            )
            self.log.add_call(
                note.agent_id,
                note.call,
                outcome,
                note.t_sched - t0,
                start - t0,
                float(response_time),
                server_ms=server_ms(timing),
            )
        else:  # not one of our users: still a row, so the table counts what Locust counts
            error = transport_error(exception) if status == 0 else ""
            sent = start - t0  # no model scheduled it: due when sent
            self.log.add(
                OTHER_USER_ID,
                name,
                request_type,
                sent,
                sent,
                float(response_time),
                status,
                error,
                math.nan,
                server_ms(timing),
            )

    def sample(self, users: int, loop_lag_s: float) -> None:
        """Record this process's CPU (since the last sample), resident memory and timer lag now."""
        self._samples.append(
            (
                time.time() - self.t0,
                self.process,
                self._ps.cpu_percent(None),
                self._ps.memory_info().rss / 1e6,
                users,
                loop_lag_s * 1000.0,
                psutil.cpu_percent(None),
            )
        )

    def take_requests(self) -> pa.Table:
        return self.log.take(self.run_id, EXECUTOR)

    def take_samples(self) -> pa.Table:
        rows, self._samples = self._samples, []
        columns: list[Any] = list(zip(*rows)) if rows else [[] for _ in GENERATOR_SCHEMA.names]
        return pa.Table.from_arrays(
            [pa.array(c, f.type) for c, f in zip(columns, GENERATOR_SCHEMA)], schema=GENERATOR_SCHEMA
        )

    def to_message(self) -> dict[str, bytes]:
        """The chunk so far, as bytes for a worker's report to its master."""
        return {"rows": to_ipc(self.take_requests()), "samples": to_ipc(self.take_samples())}


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


class PartWriter:
    """Writes chunks into `RUN/parts/` as small Parquet files, each complete once it appears."""

    def __init__(self, run_path: Path) -> None:
        self.dir = Path(run_path) / PARTS
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq: dict[str, int] = {}

    def write(self, kind: str, source: str, table: pa.Table) -> None:
        """Write one chunk of `kind` ("requests" or "generator") from `source` (a process name)."""
        if table.num_rows == 0:
            return
        key = f"{kind}-{source}"
        seq = self._seq.get(key, 0)
        self._seq[key] = seq + 1
        final = self.dir / f"{key}-{seq:06d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(final)  # a reader (or a merge after a crash) never sees half a file


def merge_parts(run: RunDir) -> int:
    """Append every requests part to the run's `requests.parquet`, write `generator.parquet`.

    Returns the number of request rows. Parts are removed once merged; an interrupted merge
    leaves them to be merged again.
    """
    parts = run.path / PARTS
    request_files = sorted(parts.glob("requests-*.parquet")) if parts.is_dir() else []
    generator_files = sorted(parts.glob("generator-*.parquet")) if parts.is_dir() else []
    for path in request_files:
        run.append_requests(pq.read_table(path).cast(REQUEST_SCHEMA))
    run.close_requests()
    samples = [pq.read_table(p).cast(GENERATOR_SCHEMA) for p in generator_files]
    generator = pa.concat_tables(samples) if samples else GENERATOR_SCHEMA.empty_table()
    generator = generator.sort_by([("t_s", "ascending"), ("process", "ascending")])
    run.write_table("generator", generator)
    for path in [*request_files, *generator_files, *parts.glob("*.tmp")] if parts.is_dir() else []:
        path.unlink()
    if parts.is_dir():
        parts.rmdir()
    return run.rows
