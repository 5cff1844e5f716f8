"""The tables of a run directory: one schema for simulated and measured runs.

Times are seconds since the run started (`t_*_s`, `*_s`), in the run's own clock (virtual
for a simulation, wall for a load test); latencies are milliseconds (`*_ms`).
"""

from __future__ import annotations

import pyarrow as pa

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
OPERATOR_ID = -1  # the agent_id of the operator's requests
