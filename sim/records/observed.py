"""Task and command tables rebuilt from what the agents and the operator saw: their request rows.

A load test against a server that does not export its tables (a staging host) still has
every request its agents and operator made. From the successful ones:

- commands, per agent (one agent, one source, one FIFO queue): a command is first delivered
  by the first poll that returned it (a poll returns the head of the queue again and again
  until it is acknowledged) and acknowledged by the agent's successful `command_result`; it
  was enqueued by the operator's request that queued it (start/stop/restart/sync, log
  collection, delete on the task the agent serves), matched in queue order;
- tasks: created by the operator's `create_task`, moved by its actions and the agents'
  acknowledgements and progress reports. A row does not say everything: an action's
  operation, an acknowledgement's success, whether a progress report was the last subtask
  at 100. So each task's states are inferred over its whole history with the lifecycle's
  transition table (`sim.model.lifecycle`): every trigger narrows the states the task can
  be in, forwards and backwards (a successful sync proves the migration had succeeded, and
  so which progress report completed it). A state, or a trigger, is written where only one
  remains; elsewhere the state is left as it was last known and the trigger names the
  candidates (`progress|progress:last-subtask-100`). An acknowledgement that nothing later
  contradicts is taken as a success (a failed START shows as a restart; a silent failure
  is rare).

Times are when the answer came back (`t_start_s + latency_ms`), when the agent or operator
knew. Source ids, subtasks, progress values and results stay empty; `NOTE` says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.model.entities import TaskEvent
from sim.model.intents import ENDPOINTS
from sim.model.lifecycle import GONE, PREVIOUS, TRANSITIONS, Move, TaskState, Trigger
from sim.records.rows import tasks_table
from sim.records.schema import COMMAND_SCHEMA

NOTE = (
    "observed by the agents and the operator (commands from polls and acknowledgements, tasks from "
    "the operator's calls and the agents' reports; states where the lifecycle determines them, "
    "acknowledgements taken as successes unless the task's history says otherwise; source ids, "
    "subtasks, progress values and command results unknown)"
)
_NAME_OF = {(method, template): name for name, (method, template) in ENDPOINTS.items()}
_SAME_AS = {"poll_v3": "poll", "command_result_v3": "command_result", "progress_v1": "progress"}  # API versions
_OPS = {"action", "collect_log", "delete_task"}
_QUEUES = {"collect_log": {"UPLOAD_LOG"}, "delete_task": {"DELETE"}, "action": {"START", "STOP", "SYNC"}}
_ACTIONS_FOR = {"START": ("start", "restart"), "STOP": ("stop",), "SYNC": ("sync",)}
_STATES = frozenset([*(s.value for s in TaskState), GONE])
# Where PREVIOUS leads back to: a resumed or failed stop returns to the running phase; a failed
# delete to whatever state the task was deleted from.
_PREVIOUS = {
    "ABORT": frozenset({"RUNNING", "SYNCING"}),
    "ABORTING": frozenset({"RUNNING", "SYNCING"}),
    "DELETING": frozenset(s.value for s in TaskState if isinstance(TRANSITIONS[(s, Trigger.DELETE)], Move)),
}


@dataclass
class _Event:
    """One successful request about a task, with the triggers it may have been."""

    t: float
    task_id: str
    triggers: tuple[str, ...]
    before: frozenset[str] = field(default_factory=frozenset)
    after: frozenset[str] = field(default_factory=frozenset)


@dataclass
class _Command:
    agent_id: int
    task_id: str
    name: str  # "" until known (an action whose command was never delivered)
    delivered: float | None
    enqueued: float | None = None
    acked: float | None = None


@cache
def _moves(state: str, trigger: str) -> frozenset[str]:
    """The states `trigger` can take a task in `state` to (empty: not a legal trigger there).

    A stopping, stopped or deleting task remembers where it came from ("ABORT/RUNNING"): a
    resume or a failed stop or delete goes back there (`PREVIOUS`), and only the task's
    history says where that is.
    """
    base, _, came_from = state.partition("/")
    if base == GONE:
        return frozenset()
    move = TRANSITIONS[(TaskState(base), Trigger(trigger))]
    if not isinstance(move, Move):
        return frozenset()
    if move.to is PREVIOUS:
        return frozenset({came_from}) if came_from else _PREVIOUS[base]
    to = move.to.value if isinstance(move.to, TaskState) else str(move.to)
    if to == base:
        return frozenset({state})
    if to in ("ABORTING", "DELETING"):
        return frozenset({f"{to}/{state}"})
    if base == "ABORTING" and to == "ABORT":
        return frozenset({f"ABORT/{came_from}" if came_from else "ABORT"})
    return frozenset({to})


def _known(states: frozenset[str]) -> str | None:
    """The task's state when every possibility agrees on it (whatever each remembers), else None."""
    bases = {s.partition("/")[0] for s in states}
    return bases.pop() if len(bases) == 1 else None


class _Row(NamedTuple):
    t: float  # when the answer came back
    name: str  # the endpoint's name, API versions folded together
    agent_id: int
    command_name: str
    task_id: str


def _answered(requests: pd.DataFrame) -> list[_Row]:
    """The successful requests about tasks or commands, in the order they were answered."""
    # Idle polls (most of a run) say nothing about tasks or commands.
    # Null is "none" (a run written before nulls had "": `load_run` reads that as null too).
    command_name = requests["command_name"].astype(object).fillna("")
    task_id = requests["task_id"].astype(object).fillna("")
    keep = requests["ok"].to_numpy(dtype=bool) & (
        (command_name != "").to_numpy(dtype=bool) | (task_id != "").to_numpy(dtype=bool)
    )
    r = requests[keep]
    t = r["t_start_s"].to_numpy(dtype=np.float64) + r["latency_ms"].to_numpy(dtype=np.float64) / 1000.0
    names = [_NAME_OF.get((str(m), str(e)), "") for m, e in zip(r["method"], r["endpoint"])]
    rows = [
        _Row(float(when), _SAME_AS.get(name, name), int(agent), str(command), str(task))
        for when, name, agent, command, task in zip(
            t.tolist(), names, r["agent_id"].tolist(), command_name[keep].tolist(), task_id[keep].tolist()
        )
    ]
    return sorted(rows, key=lambda row: row.t)  # stable: rows answered at the same time keep their order


def _commands(rows: list[_Row], events: list[_Event]) -> list[_Command]:
    """Commands per agent queue, matched to the operator's requests that queued them; adds ack events."""
    agent_of: dict[str, int] = {}
    for row in rows:
        if row.name == "poll" and row.command_name and row.task_id:
            agent_of.setdefault(row.task_id, row.agent_id)
    pending: dict[int, list[tuple[float, str, str]]] = defaultdict(list)  # agent -> (t, op, task) not yet matched
    out: list[_Command] = []
    open_: dict[int, _Command] = {}
    for row in rows:
        name, agent = row.name, row.agent_id
        if name in _OPS and row.task_id in agent_of:
            pending[agent_of[row.task_id]].append((row.t, name, row.task_id))
        elif name == "poll" and row.command_name:
            current = open_.get(agent)
            if current is not None and current.name == row.command_name:
                continue  # delivered again: the head stays until it is acknowledged
            queue = pending[agent]
            match = next((i for i, (_, op, _) in enumerate(queue) if row.command_name in _QUEUES[op]), None)
            t_op: float | None = None
            task_id = row.task_id
            if match is not None:
                t_op, _, task_id = queue.pop(match)
            command = _Command(agent, row.task_id or task_id, row.command_name, row.t, t_op)
            open_[agent] = command
            out.append(command)
        elif name == "command_result" and row.command_name:
            current = open_.get(agent)
            if current is not None and current.name == row.command_name:
                current.acked = row.t
                del open_[agent]
                results: tuple[str, ...] = ("success", "fail")
                task_id = current.task_id
            else:  # nothing of that name pending: an agent's report that its migration or sync failed
                results = ("fail",)
                task_id = row.task_id
            if task_id:
                events.append(_Event(row.t, task_id, tuple(f"result:{row.command_name}:{r}" for r in results)))
    for agent, queue in pending.items():  # queued, never delivered before the run ended
        for t_op, op, task_id in queue:
            name = next(iter(_QUEUES[op])) if op != "action" else ""  # an action's: known once its trigger is
            out.append(_Command(agent, task_id, name, None, t_op))
    return out


def _task_events(rows: list[_Row], commands: list[_Command]) -> list[_Event]:
    """Create, operator and progress events (acknowledgements come from `_commands`)."""
    queued = {(c.task_id, c.enqueued): c.name for c in commands if c.enqueued is not None and c.name}
    events = []
    for row in rows:
        if not row.task_id:
            continue
        if row.name == "create_task":
            events.append(_Event(row.t, row.task_id, ("create",)))
        elif row.name == "progress":
            events.append(_Event(row.t, row.task_id, ("progress", "progress:last-subtask-100")))
        elif row.name == "collect_log":
            events.append(_Event(row.t, row.task_id, ("collect_log",)))
        elif row.name == "delete_task":
            events.append(_Event(row.t, row.task_id, ("delete",)))
        elif row.name == "action":
            name = queued.get((row.task_id, row.t))
            actions = _ACTIONS_FOR[name] if name in _ACTIONS_FOR else ("restart", "start", "stop", "sync")
            events.append(_Event(row.t, row.task_id, actions))
    return events


def _infer(history: list[_Event]) -> None:
    """Narrow each event's possible states before and after, forwards then backwards (exact on a chain)."""
    states = _STATES
    for e in history:
        if e.triggers == ("create",):
            e.before, e.after = frozenset(), frozenset({"READY"})
        else:
            steps = {s: frozenset().union(*(_moves(s, t) for t in e.triggers)) for s in states}
            e.before = frozenset(s for s, to in steps.items() if to)
            e.after = frozenset().union(*steps.values())
        states = e.after or _STATES  # an impossible history (a lost request): start afresh
    for later, e in zip(reversed(history), reversed(history[:-1])):
        narrowed = e.after & later.before
        if narrowed and e.triggers != ("create",):
            e.after = narrowed
            e.before = frozenset(s for s in e.before if any(_moves(s, t) & narrowed for t in e.triggers))


def _fits(e: _Event) -> list[str]:
    """The event's triggers consistent with its states."""
    return [t for t in e.triggers if e.triggers == ("create",) or any(_moves(s, t) & e.after for s in e.before)]


def _trigger(e: _Event) -> str:
    """The one trigger consistent with the event's states, else the candidates joined by `|`."""
    fits = _fits(e)
    return fits[0] if len(fits) == 1 else "|".join(sorted(fits or e.triggers))


def _resolve(history: list[_Event]) -> None:
    """Infer the states; an acknowledgement nothing later contradicts is then taken as a success.

    The row does not say how the agent's command went, and a failure usually shows later (a
    failed START is restarted); one that does not show is far more likely a success than not.
    """
    _infer(history)
    for e in history:
        fits = _fits(e)
        success = [t for t in fits if t.startswith("result:") and t.endswith(":success")]
        if len(fits) > 1 and success:
            e.triggers = (success[0],)
            _infer(history)


def observed_tables(run_id: str, requests: pd.DataFrame) -> tuple[pa.Table, pa.Table]:
    """(tasks, commands) as `TASK_SCHEMA` and `COMMAND_SCHEMA` tables, from a run's request rows."""
    rows = _answered(requests)
    events: list[_Event] = []
    commands = _commands(rows, events)
    events += _task_events(rows, commands)
    tasks: list[TaskEvent] = []
    by_task: dict[str, list[_Event]] = defaultdict(list)
    for e in sorted(events, key=lambda e: e.t):
        by_task[e.task_id].append(e)
    for task_id, history in by_task.items():
        _resolve(history)
        last = ""  # the state the task was last known in; a change is written only into a known state
        for e in history:
            to = _known(e.after) or last
            tasks.append(TaskEvent(e.t, task_id, "", last, to, _trigger(e)))
            last = to
    # An action whose command never arrived queued the command its trigger, once inferred, names.
    command_of = {"start": "START", "restart": "START", "stop": "STOP", "sync": "SYNC"}
    inferred = {(e.task_id, e.t): command_of.get(e.trigger, "") for e in tasks}
    for c in commands:
        if not c.name:
            c.name = inferred.get((c.task_id, c.enqueued or 0.0), "")
    commands = [c for c in commands if c.name]
    commands.sort(key=lambda c: c.enqueued if c.enqueued is not None else (c.delivered or 0.0))
    command_table = pa.Table.from_pydict(
        {
            "run_id": [run_id] * len(commands),
            "seq": list(range(1, len(commands) + 1)),
            "source_id": [None] * len(commands),  # unknown: the agents' requests do not name it
            "task_id": [c.task_id or None for c in commands],
            "command_name": [c.name for c in commands],
            "enqueued_s": [c.enqueued for c in commands],
            "delivered_s": [c.delivered for c in commands],
            "acked_s": [c.acked for c in commands],
            "result": [None] * len(commands),
        },
        schema=COMMAND_SCHEMA,
    )
    return tasks_table(run_id, sorted(tasks, key=lambda e: e.t)), command_table
