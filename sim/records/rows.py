"""Rows of a run's tables: request rows as the run goes, task and command rows at its end.

`RequestLog.add_call` is the one place a request row is built from what an executor knows
(the agent, its `Call`, the `Outcome`, the times): the simulation's engine and the load
test's recorder both call it, so the endpoint template, method, error and annotations
(`command_name`, `task_id`) are derived alike for simulated and measured requests. "None" is
written as null (an empty string from the model becomes null here, the one place rows are made).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from sim.model.entities import CommandRecord, TaskEvent
from sim.model.intents import ENDPOINTS, Call, Outcome, record_annotations
from sim.records.schema import COMMAND_SCHEMA, REQUEST_SCHEMA, TASK_SCHEMA


def ok_status(status: np.ndarray) -> np.ndarray:
    """Whether each request succeeded: an HTTP status in 2xx (0, no response, is a failure)."""
    status = np.asarray(status)
    return (status >= 200) & (status < 300)


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
        self.t_sched_s, self.t_start_s, self.latency_ms = array("d"), array("d"), array("d")
        self.queue_wait_ms, self.server_ms = array("d"), array("d")

    def __len__(self) -> int:
        return len(self.agent_id)

    def add_call(
        self,
        agent_id: int,
        call: Call,
        outcome: Outcome,
        t_sched_s: float,
        t_start_s: float,
        latency_ms: float,
        queue_wait_ms: float = math.nan,
        server_ms: float = math.nan,
    ) -> None:
        """One row for a model's request: `call` as the model made it, `outcome` as it came back.

        The executor gives only what it alone knows (times, and the server's own timings
        where it can see them). On the simulation's hot path: the appends are written out
        here rather than delegated to `add`, a call less per request.
        """
        # mypy takes this name for the __future__ feature that intents.py also imports.
        command_name, task_id = record_annotations(call, outcome)
        method, template = ENDPOINTS[call.endpoint]
        self.agent_id.append(agent_id)
        self.endpoint.append(template)
        self.method.append(method)
        self.t_sched_s.append(t_sched_s)
        self.t_start_s.append(t_start_s)
        self.latency_ms.append(latency_ms)
        self.status.append(outcome.status)
        self.error.append(outcome.error_code or outcome.error)
        self.command_name.append(command_name)
        self.task_id.append(task_id)
        self.queue_wait_ms.append(queue_wait_ms)
        self.server_ms.append(server_ms)

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
        queue_wait_ms: float = math.nan,
        server_ms: float = math.nan,
    ) -> None:
        """One row for a request that no model made (a benchmark's plain Locust user): no annotations."""
        self.agent_id.append(agent_id)
        self.endpoint.append(endpoint)
        self.method.append(method)
        self.t_sched_s.append(t_sched_s)
        self.t_start_s.append(t_start_s)
        self.latency_ms.append(latency_ms)
        self.status.append(status)
        self.error.append(error)
        self.command_name.append("")
        self.task_id.append("")
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
            "executor": [executor] * n,
            "agent_id": pa.array(np.frombuffer(self.agent_id, dtype=np.int64) if n else [], pa.int64()),
            "endpoint": self.endpoint,
            "method": self.method,
            "t_sched_s": pa.array(floats["t_sched_s"]),
            "t_start_s": pa.array(floats["t_start_s"]),
            "latency_ms": pa.array(floats["latency_ms"]),
            "status": pa.array(status, pa.int32()),
            "ok": pa.array(ok_status(status)),
            "error": _nulls(self.error),
            "command_name": _nulls(self.command_name),
            "task_id": _nulls(self.task_id),
            "queue_wait_ms": pa.array(floats["queue_wait_ms"], from_pandas=True),
            "server_ms": pa.array(floats["server_ms"], from_pandas=True),
        }
        table = pa.Table.from_pydict(columns, schema=REQUEST_SCHEMA)
        self._clear()
        return table


def _nulls(values: Iterable[str | None]) -> list[str | None]:
    """None for every empty value: the tables write "none" as null."""
    return [v or None for v in values]


def tasks_table(run_id: str, events: Iterable[TaskEvent], t0: float = 0.0) -> pa.Table:
    """Task transitions as rows of `TASK_SCHEMA`, times relative to `t0`."""
    ev = list(events)
    return pa.Table.from_pydict(
        {
            "run_id": [run_id] * len(ev),
            "t_s": [e.t - t0 for e in ev],
            "task_id": [e.task_id for e in ev],
            "source_id": _nulls(e.source_id for e in ev),
            "from_state": _nulls(e.from_state for e in ev),
            "to_state": [e.to_state for e in ev],
            "trigger": [e.trigger for e in ev],
            "subtask": _nulls(e.subtask for e in ev),
            "progress": [e.progress if e.progress >= 0 else None for e in ev],
        },
        schema=TASK_SCHEMA,
    )


def commands_table(run_id: str, commands: Iterable[CommandRecord], t0: float = 0.0) -> pa.Table:
    """Queued commands as rows of `COMMAND_SCHEMA`, times relative to `t0` (null: not reached)."""
    cs = list(commands)

    def rel(t: float | None) -> float | None:
        return None if t is None else t - t0

    return pa.Table.from_pydict(
        {
            "run_id": [run_id] * len(cs),
            "seq": [c.seq for c in cs],
            "source_id": _nulls(c.source_id for c in cs),
            "task_id": _nulls(c.task_id for c in cs),
            "command_name": [c.name.value for c in cs],
            "enqueued_s": [rel(c.enqueued_at) for c in cs],
            "delivered_s": [rel(c.delivered_at) for c in cs],
            "acked_s": [rel(c.acked_at) for c in cs],
            "result": _nulls(c.result for c in cs),
        },
        schema=COMMAND_SCHEMA,
    )
