"""Tasks left unfinished at the end of a run, and why: still in flight, or stuck.

A task is *unfinished* when its last state is READY (waiting for the operator) or one of
`IN_FLIGHT` (RUNNING, SYNCING, ABORTING, DELETING: waiting for the agent or the server). An
in-flight task is *stuck* when nothing has moved it for `stuck_after_s` before the end of the
run: no state change, no progress and no command result the server accepted. That bound is the
longest an agent that works can stay silent about a task it runs:

    stuck_after_s = 2 x (poll_interval_s + poll_jitter_s)    a command waits at most a poll
                  + 2 x (progress_interval_s                 a running transfer reports this often
                         + progress_jitter_s)
                  + request_timeout_s (10 s if none)         one slow request
                  + retry cap_s                              one retry wait after a fault

An agent whose report fell into an outage re-sends it after its next poll that gets through
(`sim.model.agent`), well within the bound; a task stuck past it will not move by itself.

The reason names what the run's tables show: the state, the last progress, the command the
task waits for (queued, delivered, not acknowledged) and the agent's reports that failed after
the last one the server accepted. It needs only the task table and the request rows, so it
works for the simulation, the reference server and an external host (whose task table is
observed from the requests and ends with the state the API gave at the end of the run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from sim.model.intents import ENDPOINTS

IN_FLIGHT = ("RUNNING", "SYNCING", "ABORTING", "DELETING")
UNFINISHED = ("READY", *IN_FLIGHT)
LISTED_AT_MOST = 100  # summary.json lists this many unfinished tasks, the stuck first
# The agent's own calls about a task: what it reports and acknowledges.
_REPORTS = frozenset(ENDPOINTS[n][1] for n in ("progress", "progress_v1", "command_result", "command_result_v3"))
_WAITS_FOR = {"ABORTING": "STOP", "DELETING": "DELETE", "RUNNING": "START", "SYNCING": "SYNC"}


def stuck_after_s(scenario: Mapping[str, Any]) -> float:
    """The bound of the module doc for a scenario in file form (a manifest's `scenario`)."""
    agent = scenario.get("agent") or {}
    retry = agent.get("retry") or {}
    return (
        2 * (float(agent.get("poll_interval_s", 30)) + float(agent.get("poll_jitter_s", 0)))
        + 2 * (float(agent.get("progress_interval_s", 10)) + float(agent.get("progress_jitter_s", 0)))
        + float(agent.get("request_timeout_s") or 10)
        + float(retry.get("cap_s", 0) or 0)
    )


def unfinished_tasks(
    tasks: pd.DataFrame, requests: pd.DataFrame, commands: pd.DataFrame, end_s: float, stuck_after: float
) -> list[dict[str, Any]]:
    """Each unfinished task: task_id, state, stuck, idle_s (since it last moved) and reason; stuck first."""
    if tasks.empty:
        return []
    ordered = tasks.sort_values("t_s", kind="stable")
    last = ordered.groupby("task_id").tail(1).set_index("task_id")
    last = last[last["to_state"].isin(UNFINISHED)]
    if last.empty:
        return []
    ids = set(last.index)
    moved = ordered[ordered["task_id"].isin(ids)].groupby("task_id")["t_s"].max()
    reports = _reports(requests, ids)
    accepted = reports[reports["ok"]].groupby("task_id")["t_end_s"].max() if len(reports) else pd.Series(dtype=float)
    progress = ordered[ordered["task_id"].isin(ids) & ordered["progress"].notna()].groupby("task_id").tail(1)
    progress = progress.set_index("task_id")
    out: list[dict[str, Any]] = []
    for task_id, row in last.iterrows():
        state = str(row["to_state"])
        t_moved = max(float(moved.get(task_id, row["t_s"])), float(accepted.get(task_id, -1.0)))
        idle = max(0.0, end_s - t_moved)
        stuck = state in IN_FLIGHT and idle > stuck_after
        parts = [_state_text(state, progress.loc[task_id] if task_id in progress.index else None)]
        parts += _command_text(commands, str(task_id), state)
        parts += _failed_text(reports, str(task_id), t_moved)
        if state == "READY":
            parts.append("waiting for the operator's start")
        elif stuck:
            parts.append(f"nothing moved it for {idle:.0f} s (stuck after {stuck_after:.0f} s)")
        else:
            parts.append(f"in flight: last moved {idle:.1f} s before the end")
        out.append(
            {
                "task_id": str(task_id),
                "state": state,
                "stuck": stuck,
                "idle_s": round(idle, 3),
                "reason": "; ".join(parts),
            }
        )
    out.sort(key=lambda u: (not u["stuck"], -float(u["idle_s"]), str(u["task_id"])))
    return out


def _reports(requests: pd.DataFrame, ids: set[Any]) -> pd.DataFrame:
    """The agents' progress reports and command results about `ids`, with when each ended."""
    if requests.empty or "task_id" not in requests:
        return pd.DataFrame(columns=["task_id", "ok", "status", "error", "t_end_s"])
    mine = requests[requests["endpoint"].astype(str).isin(_REPORTS) & requests["task_id"].isin(ids)]
    out = mine[["task_id", "ok", "status", "error"]].copy()
    out["t_end_s"] = mine["t_start_s"] + mine["latency_ms"] / 1000
    return out


def _state_text(state: str, progress: pd.Series | None) -> str:
    if progress is None or state not in ("RUNNING", "SYNCING"):
        return state
    return f"{state} at {progress['subtask']} {progress['progress']:.0f}% (reported at {progress['t_s']:.1f} s)"


def _command_text(commands: pd.DataFrame, task_id: str, state: str) -> list[str]:
    """What became of the command the task waits for (the latest of its name)."""
    name = _WAITS_FOR.get(state)
    if name is None or commands.empty:
        return []
    mine = commands[(commands["task_id"] == task_id) & (commands["command_name"].astype(str) == name)]
    if mine.empty:
        return []
    c = mine.iloc[-1]
    if pd.isna(c["delivered_s"]):
        return [f"{name} queued at {c['enqueued_s']:.1f} s, never delivered"]
    if pd.isna(c["acked_s"]):
        return [f"{name} delivered at {c['delivered_s']:.1f} s, not acknowledged"]
    return []


def _failed_text(reports: pd.DataFrame, task_id: str, since: float) -> list[str]:
    """The agent's reports about the task that failed after it last moved."""
    failed = reports[(reports["task_id"] == task_id) & ~reports["ok"] & (reports["t_end_s"] > since)]
    if failed.empty:
        return []
    f = failed.iloc[-1]
    what = str(f["error"]) if isinstance(f["error"], str) and f["error"] else f"status {int(f['status'])}"
    return [f"{len(failed)} later report(s) failed, the last at {f['t_end_s']:.1f} s ({what})"]
