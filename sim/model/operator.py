"""The operator, sans-I/O: creates migration tasks and drives them through the operator API.

Like the agent, `Operator.run()` yields `Call`/`Sleep` intents and keeps its own model time.
It creates tasks in waves (or at a Poisson rate) for registered sources that have none, starts
them, and every `check_interval_s` lists the tasks and moves each along:

  READY -> start; RUNNING -> (with stop_probability, once) stop, then start again after
  resume_after_s; MIGRATE_FAIL -> restart (with restart_probability, at most max_restarts)
  or delete; MIGRATE_SUCCESS -> sync after sync_after_s; SYNC_SUCCESS/SYNC_FAIL -> (with
  log_collect_probability) collect logs and wait for them, then delete if delete_at_end.

A shared staging server holds sources that are not the run's: other teams', and leftovers of
earlier runs whose agents are gone. The operator acts only on the run's own: it creates tasks
only on sources whose name starts with `source_prefix` (the agents are named with it, see
`sim.fleet.source_prefix`), and moves along only the tasks it created itself.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from sim.model.intents import Call, Model, Outcome, Sleep
from sim.model.lifecycle import OsType, TaskType
from sim.model.retry import RetryPolicy, RetryPolicyName, retried

_Steps = Generator[Call | Sleep, Outcome | None, Any]
_PAGE = 200


@dataclass(frozen=True, slots=True)
class OperatorSpec:
    waves: tuple[tuple[float, int], ...] = ()  # (at_s, count)
    rate_per_s: float = 0.0  # Poisson task arrivals, instead of or besides waves
    rate_start_s: float = 0.0
    check_interval_s: float = 5.0
    sync_after_s: float | None = 5.0  # None: no sync
    stop_probability: float = 0.0
    resume_after_s: float = 5.0
    restart_probability: float = 1.0
    max_restarts: int = 3
    log_collect_probability: float = 0.0
    log_bucket: str = "sms-logs"
    delete_at_end: bool = True
    linux_block_fraction: float = 0.0
    retry: RetryPolicy = RetryPolicy(RetryPolicyName.EXPONENTIAL_FULL_JITTER, 0.5, 10.0, 5)
    # The run's own sources are those whose name starts with this (the agents' `name_prefix`);
    # the operator creates tasks on no other, and names its tasks with it too. "": every source.
    source_prefix: str = ""


@dataclass(slots=True)
class _Plan:
    """What the operator has decided, and done, for one task."""

    source_id: str
    will_stop: bool
    will_collect_log: bool
    stopped: bool = False
    resume_at: float | None = None
    restarts: int = 0
    success_seen_at: float | None = None
    synced: bool = False
    log_requested: bool = False
    delete_requested: bool = False
    last_state: str = "READY"


@dataclass(slots=True)
class OperatorStats:
    created: int = 0
    deleted: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # requests the server refused (4xx), e.g. racing the agent


class Operator:
    """Drive `run()` with outcomes; read `stats`, `plans` (live tasks) and `finished` (task ids deleted)."""

    def __init__(self, spec: OperatorSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.t = 0.0
        self.stats = OperatorStats()
        self.plans: dict[str, _Plan] = {}
        self.finished: list[str] = []
        self._sources: dict[str, OsType] = {}  # registered sources without a task of ours yet
        self._assigned: set[str] = set()

    def run(self) -> Model:
        arrivals = sorted(self.spec.waves)
        next_rate = self._next_arrival(self.spec.rate_start_s)
        next_check = self.spec.check_interval_s
        while True:
            due = [next_check]
            if arrivals:
                due.append(arrivals[0][0])
            if next_rate is not None:
                due.append(next_rate)
            wake = min(due)
            if wake > self.t:
                yield Sleep(wake - self.t)
                self.t = wake
            while arrivals and arrivals[0][0] <= self.t:
                yield from self._create(arrivals.pop(0)[1])
            if next_rate is not None and next_rate <= self.t:
                yield from self._create(1)
                next_rate = self._next_arrival(self.t)
            if next_check <= self.t:
                if self.plans:
                    yield from self._check()
                next_check = self.t + self.spec.check_interval_s

    def _next_arrival(self, after: float) -> float | None:
        rate = self.spec.rate_per_s
        return after + self.rng.expovariate(rate) if rate > 0 else None

    def _call(self, call: Call) -> _Steps:
        """Make a call, retrying 5xx, timeouts and refused connections; count what the server refused."""
        outcome = yield call
        assert outcome is not None, "executors answer every Call with an Outcome"
        self.t += outcome.latency_s
        if outcome.retryable:
            outcome, self.t = yield from retried(call, outcome, self.spec.retry, self.rng, self.t)
        if not outcome.ok and not outcome.retryable:
            self.stats.refused += 1
        return outcome

    # -- creating tasks -----------------------------------------------------------------------

    def _discover(self, wanted: int) -> _Steps:
        """List registered sources until `wanted` without a task are known (or the list ends)."""
        offset = 0
        while len(self._sources) < wanted:
            outcome = yield from self._call(Call("list_sources", query={"limit": _PAGE, "offset": offset}))
            if not outcome.ok or not isinstance(outcome.body, dict):
                return
            page = outcome.body.get("source_servers") or []
            for src in page:
                sid, name = src.get("id"), src.get("name")
                if not (isinstance(name, str) and name.startswith(self.spec.source_prefix)):
                    continue  # not this run's source: another run's, a leftover, or nobody's test at all
                if sid and sid not in self._assigned and not src.get("current_task"):
                    try:
                        self._sources[sid] = OsType(src.get("os_type"))
                    except ValueError:
                        continue
            offset += len(page)
            if len(page) < _PAGE:
                return

    def _create(self, count: int) -> _Steps:
        yield from self._discover(count)
        for _ in range(count):
            if not self._sources:
                return
            source_id, os_type = next(iter(self._sources.items()))
            del self._sources[source_id]
            self._assigned.add(source_id)
            block = os_type is OsType.WINDOWS or self.rng.random() < self.spec.linux_block_fraction
            task_type = TaskType.MIGRATE_BLOCK if block else TaskType.MIGRATE_FILE
            body = {
                "name": f"{self.spec.source_prefix}migrate-{source_id[:12]}",
                "type": task_type.value,
                "os_type": os_type.value,
                "source_server": {"id": source_id},
                "priority": 1,
            }
            outcome = yield from self._call(Call("create_task", body=body))
            if not (outcome.ok and isinstance(outcome.body, dict) and outcome.body.get("id")):
                continue
            task_id = outcome.body["id"]
            self.stats.created += 1
            self.plans[task_id] = _Plan(
                source_id,
                will_stop=self.rng.random() < self.spec.stop_probability,
                will_collect_log=self.rng.random() < self.spec.log_collect_probability,
            )
            yield from self._act(task_id, "start")

    # -- moving tasks along -------------------------------------------------------------------

    def _act(self, task_id: str, operation: str) -> _Steps:
        if operation == "collect_log":
            call = Call("collect_log", task_id=task_id, body={"log_bucket": self.spec.log_bucket})
        elif operation == "delete":
            call = Call("delete_task", task_id=task_id)
        else:
            call = Call("action", task_id=task_id, body={"operation": operation})
        outcome = yield from self._call(call)
        if outcome.ok:
            self.stats.actions[operation] = self.stats.actions.get(operation, 0) + 1
        return outcome

    def _check(self) -> _Steps:
        seen: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            outcome = yield from self._call(Call("list_tasks", query={"limit": _PAGE, "offset": offset}))
            if not outcome.ok or not isinstance(outcome.body, dict):
                return  # try again at the next check
            page = outcome.body.get("tasks") or []
            seen.update((t["id"], t) for t in page if isinstance(t, dict) and "id" in t)
            offset += len(page)
            if len(page) < _PAGE:
                break
        for task_id in list(self.plans):
            view = seen.get(task_id)
            if view is None:  # deleted: the agent acknowledged DELETE
                del self.plans[task_id]
                self.finished.append(task_id)
                self.stats.deleted += 1
                continue
            yield from self._advance(task_id, self.plans[task_id], view)

    def _advance(self, task_id: str, plan: _Plan, view: dict[str, Any]) -> _Steps:
        state = view.get("state", "")
        plan.last_state = state
        spec = self.spec
        if state == "READY":
            yield from self._act(task_id, "start")
        elif state == "RUNNING" and plan.will_stop and not plan.stopped:
            outcome = yield from self._act(task_id, "stop")
            if outcome.ok:
                plan.stopped, plan.resume_at = True, self.t + spec.resume_after_s
        elif state == "ABORT" and (plan.resume_at is None or self.t >= plan.resume_at):
            yield from self._act(task_id, "start")
        elif state == "MIGRATE_FAIL":
            if plan.restarts < spec.max_restarts and self.rng.random() < spec.restart_probability:
                outcome = yield from self._act(task_id, "restart")
                plan.restarts += 1 if outcome.ok else 0
            else:
                yield from self._finish(task_id, plan, view)
        elif state == "MIGRATE_SUCCESS":
            if plan.success_seen_at is None:
                plan.success_seen_at = self.t
            if spec.sync_after_s is None:
                yield from self._finish(task_id, plan, view)
            elif not plan.synced and self.t >= plan.success_seen_at + spec.sync_after_s:
                outcome = yield from self._act(task_id, "sync")
                plan.synced = outcome.ok
        elif state in ("SYNC_SUCCESS", "SYNC_FAIL"):
            yield from self._finish(task_id, plan, view)

    def _finish(self, task_id: str, plan: _Plan, view: dict[str, Any]) -> _Steps:
        """Collect logs if planned, then delete once they are in."""
        if plan.will_collect_log and not plan.log_requested:
            outcome = yield from self._act(task_id, "collect_log")
            plan.log_requested = outcome.ok or outcome.status in (400, 404, 409)
            return
        if plan.log_requested and view.get("log_collect_status") in ("INIT", "UPLOADING"):
            return
        if self.spec.delete_at_end and not plan.delete_requested:
            outcome = yield from self._act(task_id, "delete")
            plan.delete_requested = outcome.ok
