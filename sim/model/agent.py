"""The migration agent, sans-I/O: register, poll forever, carry out the commands it receives.

`Agent.run()` is a generator of `Call`/`Sleep` intents (sim/model/intents.py). It keeps its
own model time (`t`, advanced by its sleeps and by the latencies in the outcomes it gets), so
it needs no clock. Behaviour:

- register (retrying through outages), then poll every `poll_interval_s` +- `poll_jitter_s`,
  the first poll at a *stationary* phase: agents that all start at uniform phases in [0, T)
  with jittered intervals make a false mini-storm around t = T, so the first wait is drawn
  from the interval's equilibrium (forward-recurrence) distribution instead;
- START runs the migration's subtasks in order (the non-transfer subtasks take `subtask_s`,
  the transfer disk size / bandwidth), reporting progress when a subtask begins, every
  `progress_interval_s` +- `progress_jitter_s`, and 100 at its end; it keeps polling meanwhile,
  so STOP and DELETE arrive mid-transfer.
  STOP pauses, a later START resumes where the server says the task stands; SYNC transfers
  `sync_fraction` of the disk; DELETE ends the task for good; UPLOAD_LOG takes `upload_log_s`
  and is acknowledged when the upload is done. A migration fails partway through the transfer
  with `failure_probability`, reported as a `fail` command result.
- at-least-once delivery: a command whose acknowledgement the agent has not seen accepted is
  re-delivered by every poll; the agent recognises it by (command, task) and only re-acknowledges.
- 5xx, timeouts and refused connections are retried by the scenario's retry policy.
- restarts (`AgentSpec.restarts`, drawn from the scenario's `agent_restart` faults): at its
  first wake-up after each drawn moment the agent is gone for that restart's down time, then
  registers again with its source id, polls at once and resumes its migration where the
  server says it stands; the upload under way and the command it last saw are forgotten.
- state the server must hear converges: a progress report or a failure report (a `fail`
  command result) whose tries all failed is kept as the agent's *unsent* state and sent again
  after every poll that gets through, until the server answers it (2xx, or a 4xx: the server
  has decided). Only the latest is kept: a newer report supersedes it. Without this, a
  migration whose last report fell into an outage stayed RUNNING on the server for good.
  (A command's acknowledgement needs no such care: the server re-delivers the command until
  it has the acknowledgement.)

Commands of the public SDK's list that this model does not carry out are still answered, so
that none blocks its source's queue: SKIP is acknowledged with `success` (the real agent skips
the consistency check; this model runs none), any other well-formed command (PREMIGRATE, a
name from a later API version) with `fail`, and the agent records it in `violations` as
declined.

Lifecycle rules the agent can see broken (a command for a task it deleted, a command body it
cannot parse) go to `violations`.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from sim.model.commands import (
    Command,
    CommandFormatError,
    CommandName,
    ForeignCommand,
    command_from_dict,
    foreign_command,
)
from sim.model.distributions import Distribution
from sim.model.intents import Call, Model, Outcome, Sleep
from sim.model.lifecycle import TRANSFER_SUBTASKS, OsType, Phase, TaskType, subtask_sequence
from sim.model.retry import RetryPolicy, retried

_Steps = Generator[Call | Sleep, Outcome | None, Any]
_NOTHING: frozenset[str] = frozenset()
_REPORT_NOW = float("-inf")  # last_report of a subtask just begun: report its progress at once


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent's fixed parameters, drawn from the scenario when the agent is created."""

    index: int
    os_type: OsType
    disk_bytes: int
    bandwidth_mbps: float
    poll_interval_s: float
    poll_jitter_s: float
    progress_interval_s: float
    subtask_s: Distribution
    failure_probability: float
    upload_log_s: Distribution
    sync_fraction: float
    retry: RetryPolicy
    poll_endpoint: str = "poll"
    # Each report's interval is progress_interval_s + U(-jitter, +jitter). Without it, agents whose
    # migrations began together (an operator's wave) report in lockstep for as long as they run.
    progress_jitter_s: float = 0.0
    # Tags the source as the run's own (sim.fleet.source_prefix): on a shared server the
    # operator then acts only on sources whose name starts with it. "" in the simulation,
    # whose server holds nothing else.
    name_prefix: str = ""
    # (agent time s, down s) of each restart, in time order (sim.model.faults.AgentRestart).
    restarts: tuple[tuple[float, float], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.name_prefix}agent-{self.index:07d}"

    def registration(self) -> dict[str, Any]:
        """The RegisterServer body this agent sends."""
        i, name = self.index, self.name
        return {
            "name": name,
            "hostname": name,
            "ip": f"198.18.{(i >> 8) & 255}.{i & 255}",  # RFC 2544 benchmark range: data only, never contacted
            "os_type": self.os_type.value,
            "os_version": "CENTOS_7_9_64BIT" if self.os_type is OsType.LINUX else "WINDOWS2019_64BIT",
            "agent_version": "smsload-sim",
            "firmware": "BIOS",
            "cpu_quantity": 2,
            "memory": 4096,
            "disks": [
                {
                    "name": "/dev/vda" if self.os_type is OsType.LINUX else "C:",
                    "size": self.disk_bytes,
                    "used_size": self.disk_bytes,
                    "device_use": "OS",
                    "partition_style": "MBR",
                    "os_disk": True,
                }
            ],
            "networks": [],
        }


def stationary_offset(interval_s: float, jitter_s: float, rng: random.Random) -> float:
    """Time to the first poll for an agent already polling at equilibrium.

    The interval X is uniform on [T - j, T + j]; the time to the next renewal of a stationary
    renewal process is U * X' with X' length-biased (density proportional to x f(x)), drawn
    here by rejection.
    """
    hi = interval_s + jitter_s
    while True:
        x = interval_s + rng.uniform(-jitter_s, jitter_s)
        if rng.random() * hi <= x:
            return rng.random() * x


@dataclass(slots=True)
class _Job:
    """A migration or sync in progress on this agent."""

    task_id: str
    phase: Phase
    subtasks: list[tuple[str, float]]  # (name, duration_s)
    totalsize: int
    index: int = 0
    done_s: float = 0.0  # work done on the current subtask before `since`
    since: float = 0.0  # model time the current stretch of work began
    last_report: float = 0.0
    jitter_s: float = 0.0  # drawn at each report: the next comes progress_interval_s + this later
    fail_at_s: float | None = None  # seconds into the transfer subtask at which it fails
    paused: bool = False

    def done_now(self, t: float) -> float:
        return self.done_s + (0.0 if self.paused else t - self.since)

    def next_event(self, progress_interval_s: float) -> float:
        name, duration = self.subtasks[self.index]
        end = duration if self.fail_at_s is None or name not in TRANSFER_SUBTASKS else min(duration, self.fail_at_s)
        return min(self.since + end - self.done_s, self.last_report + progress_interval_s + self.jitter_s)


@dataclass(slots=True)
class AgentStats:
    commands: int = 0
    redeliveries: int = 0
    resent: int = 0  # unsent state reports sent again after a poll got through
    migrations_done: int = 0
    restarts: int = 0
    failures_reported: int = 0


class Agent:
    """One migration agent. Drive `run()` with outcomes; read `source_id`, `stats`, `violations`."""

    # Slots, and containers made only when first needed: a simulation holds 10^5 idle agents.
    __slots__ = (
        "spec",
        "rng",
        "t",
        "source_id",
        "_stats",
        "_violations",
        "_executed",
        "_unacked",
        "_unsent",
        "_job",
        "_upload",
        "_deleted",
        "_task_types",
        "_next_poll",
        "_poll_call",
    )

    def __init__(self, spec: AgentSpec, rng: random.Random) -> None:
        self.spec = spec
        self.rng = rng
        self.t = 0.0
        self.source_id: str | None = None
        self._stats: AgentStats | None = None
        self._violations: list[str] | None = None
        self._executed: list[tuple[str, str]] | None = None
        self._poll_call: Call | None = None  # the same request every time: made once
        self._unacked: tuple[str, str] | None = None  # key of the command whose ack is not yet accepted
        self._unsent: Call | None = None  # the latest state report the server has not had (see module doc)
        self._job: _Job | None = None
        self._upload: tuple[Command, float] | None = None  # (command, model time it finishes)
        self._deleted: frozenset[str] | set[str] = _NOTHING
        self._task_types: dict[str, TaskType] | None = None
        self._next_poll = 0.0

    @property
    def stats(self) -> AgentStats:
        if self._stats is None:
            self._stats = AgentStats()
        return self._stats

    @property
    def violations(self) -> list[str]:
        """Lifecycle rules this agent saw broken, in order."""
        return self._violations or []

    @property
    def executed(self) -> list[tuple[str, str]]:
        """The keys of the commands carried out, in order (re-deliveries are not carried out again)."""
        return self._executed or []

    def _violation(self, message: str) -> None:
        if self._violations is None:
            self._violations = []
        self._violations.append(message)

    # -- the main loop ------------------------------------------------------------------------

    def run(self) -> Model:
        yield from self._register()
        if self.source_id is None:
            return
        spec = self.spec
        self._next_poll = self.t + stationary_offset(spec.poll_interval_s, spec.poll_jitter_s, self.rng)
        restarts = spec.restarts  # those still to come (one local: no iterator per idle agent)
        while True:
            if restarts and self.t >= restarts[0][0]:
                yield from self._restart(restarts[0][1])
                restarts = restarts[1:]
                continue
            wake = min(self._next_poll, restarts[0][0]) if restarts else self._next_poll
            if self._job is not None and not self._job.paused:
                wake = min(wake, self._job.next_event(spec.progress_interval_s))
            if self._upload is not None:
                wake = min(wake, self._upload[1])
            if wake > self.t:
                yield Sleep(wake - self.t)
                self.t = wake
            if self._upload is not None and self.t >= self._upload[1]:
                command, _ = self._upload
                self._upload = None
                yield from self._acknowledge(command, success=True)
            if (
                self._job is not None
                and not self._job.paused
                and self.t >= self._job.next_event(spec.progress_interval_s)
            ):
                yield from self._advance_job()
            if self.t >= self._next_poll:
                # The poll is inlined (no sub-generator unless it fails or brings a command): an
                # idle agent waits here with one frame, not three.
                if self._poll_call is None:
                    self._poll_call = Call(spec.poll_endpoint, source_id=self.source_id)
                outcome = yield self._poll_call
                assert outcome is not None
                self.t += outcome.latency_s
                if outcome.retryable:
                    outcome = yield from self._retry(self._poll_call, outcome)
                if outcome.ok and self._unsent is not None:  # the server is back: tell it what it missed
                    yield from self._resend()
                if outcome.ok and (outcome.body or outcome.error):  # `{}`: nothing pending
                    yield from self._on_poll(outcome)
                outcome = None  # not kept alive while the agent sleeps
                self._next_poll = (
                    self.t + spec.poll_interval_s + self.rng.uniform(-spec.poll_jitter_s, spec.poll_jitter_s)
                )

    def _call(self, call: Call) -> _Steps:
        """Make a call, retrying 5xx, timeouts and refused connections by the retry policy."""
        outcome = yield call
        assert outcome is not None, "executors answer every Call with an Outcome"
        self.t += outcome.latency_s
        if outcome.retryable:
            outcome = yield from self._retry(call, outcome)
        return outcome

    def _retry(self, call: Call, outcome: Outcome) -> _Steps:
        """Retry a call that failed with `outcome` by the retry policy; model time follows.

        A method of its own rather than `retried(...)` in `run()`: the five arguments would
        deepen the stack of `run()`'s frame, which every idle agent holds (8 bytes an agent).
        """
        outcome, self.t = yield from retried(call, outcome, self.spec.retry, self.rng, self.t)
        return outcome

    def _send_state(self, call: Call) -> _Steps:
        """Send a state report (progress, failure); kept as unsent when every try failed."""
        self._unsent = None  # superseded by this newer state
        outcome = yield from self._call(call)
        if outcome.retryable:
            self._unsent = call
        return outcome

    def _resend(self) -> _Steps:
        call, self._unsent = self._unsent, None
        assert call is not None
        self.stats.resent += 1
        outcome = yield from self._call(call)
        if outcome.retryable:  # still not through: kept for the next poll that is
            self._unsent = call

    def _restart(self, down_s: float) -> _Steps:
        """Restart: down for `down_s`, register again with the id kept on disk, resume the migration."""
        self.stats.restarts += 1
        self._upload, self._unacked = None, None  # held in memory only: an upload starts again when re-delivered
        if down_s > 0:
            yield Sleep(down_s)
            self.t += down_s
        yield from self._register(self.source_id)
        job = self._job
        if job is not None and not job.paused:  # the work on disk: where the server says it stands
            yield from self._begin(job.task_id, job.phase)
        self._next_poll = self.t

    def _register(self, known_id: str | None = None) -> _Steps:
        """Register (again, with `known_id`, after a restart), retrying while the server is down."""
        body = self.spec.registration()
        if known_id is not None:
            body["id"] = known_id
        while True:
            outcome = yield from self._call(Call("register", body=body))
            if outcome.ok and isinstance(outcome.body, dict) and isinstance(outcome.body.get("id"), str):
                if outcome.body["id"] != self.source_id:
                    self.source_id, self._poll_call = outcome.body["id"], None
                return
            if not outcome.retryable:
                self._violation(f"registration refused: {outcome.status} {outcome.error_code}")
                return
            # the server is still down: try again one poll interval later
            yield Sleep(self.spec.poll_interval_s)
            self.t += self.spec.poll_interval_s

    # -- commands -----------------------------------------------------------------------------

    def _on_poll(self, outcome: Outcome) -> _Steps:
        """Act on a successful poll's answer: nothing, a re-delivery, or a new command."""
        if outcome.error:  # a 200 whose body the executor could not decode
            self._violation(f"unparseable command: {outcome.error}")
            return
        try:
            command = command_from_dict(outcome.body)
        except CommandFormatError as exc:
            foreign = foreign_command(outcome.body)
            if foreign is None:
                self._violation(f"unparseable command: {exc.msg}")
                return
            yield from self._on_foreign(foreign)
            return
        if command is None:
            return
        if command.key == self._unacked:
            # Re-delivered because our acknowledgement has not been accepted yet.
            self.stats.redeliveries += 1
            if self._upload is None or self._upload[0].key != command.key:
                yield from self._acknowledge(command, success=True)
            return
        self.stats.commands += 1
        self._unacked = command.key
        if self._executed is None:
            self._executed = []
        self._executed.append(command.key)
        if command.task_id is not None and command.task_id in self._deleted:
            self._violation(f"{command.name.value} for task {command.task_id} after its DELETE")
            yield from self._acknowledge(command, success=True)
            return
        handler = {
            CommandName.START: self._on_start,
            CommandName.STOP: self._on_stop,
            CommandName.SYNC: self._on_sync,
            CommandName.DELETE: self._on_delete,
            CommandName.UPLOAD_LOG: self._on_upload_log,
        }[command.name]
        yield from handler(command)

    def _on_foreign(self, command: ForeignCommand) -> _Steps:
        """SKIP: acknowledged (nothing to skip here); anything else: declined with `fail`, and recorded."""
        if command.key == self._unacked:
            self.stats.redeliveries += 1
        else:
            self.stats.commands += 1
            self._unacked = command.key
            if command.name != "SKIP":
                task = f" for task {command.task_id}" if command.task_id else ""
                self._violation(f"declined {command.name}{task}: not modelled, answered fail")
        yield from self._acknowledge(command, success=command.name == "SKIP")

    def _result_call(self, command: Command | ForeignCommand, success: bool) -> Call:
        name = command.name if isinstance(command, ForeignCommand) else command.name.value
        return Call(
            "command_result",
            source_id=self.source_id or "",  # registered: commands come only after registration
            body={"command_name": name, "result": "success" if success else "fail", "result_detail": {}},
            command_name=name,
            task_id=command.task_id or "",
        )

    def _acknowledge(self, command: Command | ForeignCommand, success: bool) -> _Steps:
        outcome = yield from self._call(self._result_call(command, success))
        # SMS.2009 means the server no longer has it pending: an earlier attempt got through.
        if outcome.ok or outcome.error_code == "SMS.2009":
            if self._unacked == command.key:
                self._unacked = None

    def _on_start(self, command: Command) -> _Steps:
        job = self._job
        if job is not None and job.task_id == command.task_id:
            if job.paused:  # resume where we stopped, saying so at once
                job.paused, job.since, job.last_report = False, self.t, _REPORT_NOW
        else:
            yield from self._begin(command.task_id or "", Phase.MIGRATE)
        yield from self._acknowledge(command, success=True)

    def _on_sync(self, command: Command) -> _Steps:
        yield from self._begin(command.task_id or "", Phase.SYNC)
        yield from self._acknowledge(command, success=True)

    def _on_stop(self, command: Command) -> _Steps:
        job = self._job
        if job is not None and job.task_id == command.task_id and not job.paused:
            job.done_s, job.paused = job.done_now(self.t), True
        yield from self._acknowledge(command, success=True)

    def _on_delete(self, command: Command) -> _Steps:
        if self._job is not None and self._job.task_id == command.task_id:
            self._job = None
        deleted = self._deleted if isinstance(self._deleted, set) else set()
        deleted.add(command.task_id or "")
        self._deleted = deleted
        yield from self._acknowledge(command, success=True)

    def _on_upload_log(self, command: Command) -> _Steps:
        self._upload = (command, self.t + self.spec.upload_log_s.sample(self.rng))
        return
        yield  # a generator like the other handlers

    # -- migration work -----------------------------------------------------------------------

    def _begin(self, task_id: str, phase: Phase) -> _Steps:
        """Start a migration or sync, picking up where the server says the task stands."""
        outcome = yield from self._call(Call("get_task", task_id=task_id))
        view = outcome.body if outcome.ok and isinstance(outcome.body, dict) else {}
        try:
            task_type = TaskType(view.get("type"))
        except ValueError:  # the view is unavailable: what we learnt before, else the OS's usual type
            guess = TaskType.MIGRATE_BLOCK if self.spec.os_type is OsType.WINDOWS else TaskType.MIGRATE_FILE
            task_type = (self._task_types or {}).get(task_id, guess)
        if self._task_types is None:
            self._task_types = {}
        self._task_types[task_id] = task_type
        spec = self.spec
        transfer_s = spec.disk_bytes * 8 / (spec.bandwidth_mbps * 1e6)
        names = subtask_sequence(task_type, spec.os_type, phase)
        subtasks = [
            (
                n,
                (transfer_s * (spec.sync_fraction if phase is Phase.SYNC else 1.0))
                if n in TRANSFER_SUBTASKS
                else spec.subtask_s.sample(self.rng),
            )
            for n in names
        ]
        # Where the server says this phase stands: the last entries of sub_tasks are this phase's.
        sub_tasks = view.get("sub_tasks")
        reported: list[Any] = sub_tasks if isinstance(sub_tasks, list) else []
        progress = {s.get("name"): s.get("progress", 0) for s in reported[-len(names) :] if isinstance(s, dict)}
        index = next((i for i, (n, _) in enumerate(subtasks) if progress.get(n, 0) < 100), len(subtasks) - 1)
        done = subtasks[index][1] * min(progress.get(subtasks[index][0], 0), 99) / 100
        fail_at = None
        if phase is Phase.MIGRATE and self.rng.random() < spec.failure_probability:
            fail_at = transfer_s * self.rng.uniform(0.05, 0.95)
        self._job = _Job(
            task_id,
            phase,
            subtasks,
            spec.disk_bytes,
            index=index,
            done_s=done,
            since=self.t,
            last_report=_REPORT_NOW,
            fail_at_s=fail_at,
        )

    def _advance_job(self) -> _Steps:
        job = self._job
        assert job is not None
        name, duration = job.subtasks[job.index]
        done = job.done_now(self.t)
        if job.fail_at_s is not None and name in TRANSFER_SUBTASKS and done >= job.fail_at_s - 1e-9:
            self._job = None
            self.stats.failures_reported += 1
            command = Command(
                CommandName.START if job.phase is Phase.MIGRATE else CommandName.SYNC, task_id=job.task_id
            )
            # Not an acknowledgement (nothing is pending): a report, re-sent until the server has it.
            yield from self._send_state(self._result_call(command, success=False))
            return
        if done >= duration - 1e-9:
            yield from self._report(job, name, 100)
            if job.index + 1 < len(job.subtasks):
                job.index, job.done_s, job.since, job.last_report = job.index + 1, 0.0, self.t, _REPORT_NOW
            else:
                self._job = None
                self.stats.migrations_done += 1
            return
        yield from self._report(job, name, min(99, int(100 * done / duration)))

    def _report(self, job: _Job, name: str, progress: int) -> _Steps:
        job.last_report = self.t
        jitter = self.spec.progress_jitter_s
        if jitter:  # no draw without jitter: a scenario without it keeps its random sequence
            job.jitter_s = self.rng.uniform(-jitter, jitter)
        body: dict[str, Any] = {
            "subtask_name": name,
            "progress": progress,
            "totalsize": job.totalsize,
            "replicatesize": job.totalsize * progress // 100,
            "process_trace": "",
        }
        if name in TRANSFER_SUBTASKS:
            body["migrate_speed"] = self.spec.bandwidth_mbps
        yield from self._send_state(Call("progress", task_id=job.task_id, body=body))
