"""What agent and operator models yield, and what they get back.

A model is a generator: it yields `Call` (an API request to make) or `Sleep` (time to let
pass) and receives an `Outcome` for each `Call` (None for a `Sleep`). Executors turn these
into SimPy events (sim/des) or real HTTP requests from Locust users (loadtests/); the model
itself never sends, sleeps or reads a clock.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

# Endpoint name -> (method, path template): the API's route table. The name is what records,
# service-time tables and the API core (`sim/model/api.py`) use; the template is the "endpoint
# as path template" column of the records, and the reference server routes these paths.
ENDPOINTS: dict[str, tuple[str, str]] = {
    "poll": ("GET", "/v1/sms/sources/{source_id}/command"),
    "poll_v3": ("GET", "/v3/sources/{source_id}/command"),
    "register": ("POST", "/v3/sources"),
    "command_result": ("POST", "/v1/sms/sources/{source_id}/command_result"),
    "command_result_v3": ("POST", "/v3/sources/{source_id}/command_result"),
    "progress": ("PUT", "/v3/tasks/{task_id}/progress"),
    "progress_v1": ("PUT", "/v1/sms/tasks/{task_id}/progress"),
    "get_source": ("GET", "/v3/sources/{source_id}"),
    "list_sources": ("GET", "/v3/sources"),
    "create_task": ("POST", "/v3/tasks"),
    "get_task": ("GET", "/v3/tasks/{task_id}"),
    "list_tasks": ("GET", "/v3/tasks"),
    "action": ("POST", "/v3/tasks/{task_id}/action"),
    "collect_log": ("POST", "/v3/tasks/{task_id}/log"),
    "delete_task": ("DELETE", "/v3/tasks/{task_id}"),
    # The reference server's own: a load test reads its task and command tables through these.
    "export_task_events": ("GET", "/smsload/export/task_events"),
    "export_commands": ("GET", "/smsload/export/commands"),
}
_NO_QUERY: Mapping[str, Any] = MappingProxyType({})
WRITE_ENDPOINTS = frozenset(
    {
        "register",
        "command_result",
        "command_result_v3",
        "progress",
        "progress_v1",
        "create_task",
        "action",
        "collect_log",
        "delete_task",
    }
)


@dataclass(frozen=True, slots=True)
class Call:
    """One API request an agent or operator wants made.

    `source_id` and `task_id` fill the path template's parameters; they also annotate the
    request for the records (the task acted on or reported about, even when the path does not
    name it), as `command_name` does (the command reported). A poll's command is read from its
    response instead (`record_annotations`). Plain fields, not a dict: an idle agent holds its next poll.
    """

    endpoint: str
    source_id: str = ""
    task_id: str = ""
    body: Any = None
    query: Mapping[str, Any] = field(default_factory=lambda: _NO_QUERY)  # one shared, read-only empty mapping
    command_name: str = ""

    @property
    def method(self) -> str:
        return ENDPOINTS[self.endpoint][0]

    @property
    def template(self) -> str:
        return ENDPOINTS[self.endpoint][1]

    @property
    def params(self) -> dict[str, str]:
        """Values for the path template's parameters."""
        return {"source_id": self.source_id, "task_id": self.task_id}

    @property
    def path(self) -> str:
        path = self.template.format_map(self.params)
        return f"{path}?{urlencode(self.query)}" if self.query else path


@dataclass(frozen=True, slots=True)
class Sleep:
    """Let `seconds` pass before the model continues."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a Call: HTTP status (0 when no response came), decoded JSON body, latency.

    `error` names a transport failure ("timeout", "refused", "connection") or a body that
    could not be decoded; it is empty for any HTTP response, successful or not.
    """

    status: int
    body: Any = None
    latency_s: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """5xx, timeouts and refused or broken connections are worth retrying; 4xx are not."""
        return self.status == 0 or self.status >= 500

    @property
    def error_code(self) -> str:
        return self.body.get("error_code", "") if isinstance(self.body, dict) else ""


Intent = Call | Sleep
Model = Generator[Intent, Outcome | None, None]


def record_annotations(call: Call, outcome: Outcome) -> tuple[str, str]:
    """(command_name, task_id) of a request for the records: from a poll's answer, else from the call.

    A created task's id is read from the answer too: the row of its creation then names it.
    Both executors use this, so simulated and measured tables annotate alike.
    """
    body = outcome.body
    if call.endpoint in ("poll", "poll_v3") and body and isinstance(body, dict):
        param = body.get("command_param")
        task_id = param.get("task_id") if isinstance(param, dict) else None
        return str(body.get("command_name") or ""), str(task_id or "")
    if call.endpoint == "create_task" and outcome.ok and isinstance(body, dict):
        return call.command_name, str(body.get("id") or "")
    return call.command_name, call.task_id
