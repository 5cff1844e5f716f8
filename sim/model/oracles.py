"""Lifecycle oracles: check recorded task transitions against the transition table.

Both executors record every task transition as a row (`from_state`, `to_state`, `trigger`),
the simulation from its in-memory store and the load test from the reference server's store.
`illegal_transitions` replays one task's rows through `sim.model.lifecycle.transition`, so a
simulated run and a run over real HTTP are held to the very same rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sim.model.lifecycle import GONE, PREVIOUS, Move, TaskState, Trigger, transition


class TransitionRow(Protocol):
    """One row of a run's tasks table (e.g. from `DataFrame.itertuples()`)."""

    from_state: str
    to_state: str
    trigger: str


def illegal_transitions(rows: Iterable[TransitionRow]) -> list[str]:
    """Every transition of one task, in order, checked against the transition table.

    Returns one message per row the table does not allow (an illegal trigger, or a legal
    trigger that went to another state); an empty list means every rule held.
    """
    problems = []
    prev_state = None  # what the task was in before ABORTING/DELETING, as the control plane keeps it
    for row in rows:
        if row.trigger == "create":
            continue
        state = TaskState(row.from_state)
        move = transition(state, Trigger(row.trigger))
        if not isinstance(move, Move):
            problems.append(f"{row.trigger} in {state.value} is illegal")
            continue
        if move.to is PREVIOUS:
            ok = row.to_state in ("RUNNING", "SYNCING") if state is TaskState.ABORT else row.to_state == prev_state
        elif move.to == GONE:
            ok = row.to_state == GONE
        else:
            ok = row.to_state == move.to.value  # type: ignore[union-attr]
        if not ok:
            problems.append(f"{row.trigger} in {state.value} went to {row.to_state}")
        if row.to_state in ("ABORTING", "DELETING") and row.from_state != row.to_state:
            prev_state = row.from_state
    return problems
