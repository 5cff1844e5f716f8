"""A load test's task and command tables, from the server through its API, or from what the agents saw.

The reference server exports its tables (`GET /smsload/export/task_events` and
`/smsload/export/commands`, paged, the caller's project only); a load test reads them over
HTTP with the token it already sends, once the users have stopped, and never opens the
server's database: against a staging host it could not, and should not. A server without
the export (a real SMS answers 404 there), or one that cannot answer, still leaves the
request rows: the tables are then rebuilt from them (`sim.records.observed`), and the
manifest's `server_tables` says which it was and why.

The export holds the whole project: on a shared server, other runs' and other people's tasks
too. A run's tables keep only its own tasks, those its operator created (its successful
`POST /v3/tasks`, whose answers name them in the request rows), and their commands.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sim.model.commands import CommandName
from sim.model.entities import CommandRecord, TaskEvent
from sim.model.intents import ENDPOINTS
from sim.model.lifecycle import GONE
from sim.records import commands_table, tasks_table
from sim.records.observed import NOTE, observed_tables

FROM_EXPORT = "server export"
PAGE = 10_000  # the export's largest page
TIMEOUT_S = 30.0
FINAL_VIEWS_AT_MOST = 5_000  # tasks whose final state a run asks of the public API
FINAL_VIEWS_S = 60.0


class ExportUnavailable(Exception):
    """The server's export cannot be read; the message says why, in a few words."""


def read_export(host: str, token: str, endpoint: str, *, page: int = PAGE) -> list[dict[str, Any]]:
    """Every item of one export endpoint (`export_task_events` or `export_commands`), `page` items a request."""
    path = ENDPOINTS[endpoint][1]
    client = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
    items: list[dict[str, Any]] = []
    try:
        while True:
            response = client.get(
                f"{host.rstrip('/')}{path}",
                params={"offset": len(items), "limit": page},
                headers={"X-Auth-Token": token},
            )
            if response.status_code == 404:
                raise ExportUnavailable(f"the server has no {path} (HTTP 404)")
            if response.status_code != 200:
                raise ExportUnavailable(f"{path} answered HTTP {response.status_code}")
            body = response.json()
            if not (isinstance(body, dict) and isinstance(body.get("items"), list) and "count" in body):
                raise ExportUnavailable(f"{path} answered something other than an export page")
            items += body["items"]
            if not body["items"] or len(items) >= int(body["count"]):
                return items
    except httpx.HTTPError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportUnavailable(f"cannot read {path}: {reason}") from None
    except ValueError:
        raise ExportUnavailable(f"{path} answered with something that is not JSON") from None
    finally:
        client.close()


def _command(item: dict[str, Any]) -> CommandRecord:
    return CommandRecord(
        source_id=item["source_id"],
        task_id=item["task_id"],
        name=CommandName(item["command_name"]),
        param=item.get("param") or {},
        enqueued_at=item["enqueued_at"],
        seq=item["seq"],
        delivered_at=item["delivered_at"],
        acked_at=item["acked_at"],
        result=item["result"],
    )


def exported_tables(run_id: str, host: str, token: str, t0: float) -> tuple[pa.Table, pa.Table]:
    """(tasks, commands) read from the server's export, times made relative to `t0` (epoch seconds)."""
    try:
        events = [TaskEvent(**item) for item in read_export(host, token, "export_task_events")]
        commands = [_command(item) for item in read_export(host, token, "export_commands")]
    except (KeyError, TypeError, ValueError) as exc:  # an item that is not what the export promises
        raise ExportUnavailable(f"an export item could not be read ({type(exc).__name__}: {exc})") from None
    return tasks_table(run_id, events, t0=t0), commands_table(run_id, commands, t0=t0)


def own_task_ids(requests: pd.DataFrame) -> set[str]:
    """The tasks the run created: its successful `POST /v3/tasks`, whose rows carry the new task's id."""
    method, path = ENDPOINTS["create_task"]
    created = requests[(requests["method"] == method) & (requests["endpoint"] == path) & requests["ok"]]
    return {t for t in created["task_id"] if t}


def only_own(tasks: pa.Table, commands: pa.Table, own: set[str]) -> tuple[pa.Table, pa.Table]:
    """The rows of `own` tasks, and the commands of those tasks (or, without a task, of their sources)."""
    value_set = pa.array(sorted(own), pa.string())
    tasks = tasks.filter(pc.is_in(tasks["task_id"], value_set=value_set))
    sources = pa.array(sorted(set(tasks["source_id"].to_pylist())), pa.string())
    by_task = pc.is_in(commands["task_id"], value_set=value_set)
    by_source = pc.and_(pc.equal(commands["task_id"], ""), pc.is_in(commands["source_id"], value_set=sources))
    return tasks, commands.filter(pc.or_(by_task, by_source))


def server_tables(
    run_id: str, host: str | None, token: str, t0: float, requests: pd.DataFrame
) -> tuple[pa.Table, pa.Table, str]:
    """(tasks, commands, where they came from): the server's export, else rebuilt from `requests`."""
    if host:
        try:
            tasks, commands = exported_tables(run_id, host, token, t0)
            return (*only_own(tasks, commands, own_task_ids(requests)), FROM_EXPORT)
        except ExportUnavailable as exc:
            why = str(exc)
    else:
        why = "no server address to ask"
    tasks, commands = observed_tables(run_id, requests)
    note = f"{NOTE}: {why}"
    if host:
        ends, said = final_views(run_id, host, token, tasks, _end_s(requests))
        tasks, note = pa.concat_tables([tasks, ends]), f"{note}; {said}"
    return tasks, commands, note


def _end_s(requests: pd.DataFrame) -> float:
    if requests.empty:
        return 0.0
    return float((requests["t_start_s"] + requests["latency_ms"] / 1000).max())


def final_views(run_id: str, host: str, token: str, tasks: pa.Table, end_s: float) -> tuple[pa.Table, str]:
    """Rows that end each observed task in the state the public API gives now (`GET /v3/tasks/{id}`).

    What the requests show of a task stops at the run's last report; the server's word is
    what says whether it finished (sim.records.unfinished). A task whose state the view
    confirms gets no row; one the API no longer has ends DELETED. Bounded: at most
    `FINAL_VIEWS_AT_MOST` tasks, within `FINAL_VIEWS_S` seconds; the note says what was read.
    """
    frame = tasks.select(["task_id", "to_state", "t_s"]).to_pandas()
    last = frame.sort_values("t_s", kind="stable").groupby("task_id")["to_state"].last()
    path = ENDPOINTS["get_task"][1]
    events, read, deadline = [], 0, time.monotonic() + FINAL_VIEWS_S
    with httpx.Client(base_url=host.rstrip("/"), timeout=10.0, headers={"X-Auth-Token": token}) as client:
        for task_id, state in list(last.items())[:FINAL_VIEWS_AT_MOST]:
            if time.monotonic() > deadline:
                break
            try:
                response = client.get(path.format(task_id=task_id))
            except httpx.HTTPError:
                break
            if response.status_code == 404:
                now = GONE
            elif response.status_code == 200 and isinstance(response.json(), dict):
                now = str(response.json().get("state") or state)
            elif response.status_code in (401, 403):  # not allowed to read tasks: nothing more to learn
                break
            else:
                continue
            read += 1
            if now != state:
                events.append(TaskEvent(end_s, str(task_id), "", str(state), now, "final_view"))
    said = f"final states read from {path} for {read} of {len(last)} tasks"
    return tasks_table(run_id, events), said
