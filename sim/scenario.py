"""Scenarios: one YAML file per experiment, validated into a frozen pydantic model.

The same `Scenario` configures the simulation and the load test. Every model forbids unknown
keys and is frozen; units are in the field names. Distribution fields take a bare number (a
constant) or a mapping `{dist: constant|uniform|exponential|lognormal|empirical, ...}` and
hold ready `sim.model.distributions` objects; `agent.retry` holds a ready `RetryPolicy`.
`to_dict()` gives back the resolved file form, for run manifests.

Every problem in a file, however many, comes back in one `ScenarioError` as
`(field path, what was expected and what was given)`, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from sim.model.distributions import Constant, LogNormal, Uniform
from sim.model.faults import AgentRestart, ErrorRate, FaultTimeline, Latency, Outage, OutageMode, SlowStore
from sim.model.lifecycle import OsType
from sim.model.retry import RetryPolicy
from sim.scenario_fields import (
    Fraction,
    FrozenModel,
    NonNegative,
    NonNegativeDist,
    Positive,
    PositiveDist,
    RetryField,
    Whole,
    by_kind,
    fail,
    problems_from,
    rules,
)
from sim.scenario_limits import limit_problems
from sim.scenario_server import ENDPOINTS, ServerConfig, steady_pollers_stay_connected
from sim.scenario_yaml import MAX_DEPTH, ScenarioError, load_yaml, read_scenario_text
from sim.slo import SloError, parse_slo

__all__ = [
    "ENDPOINTS",
    "Scenario",
    "ScenarioError",
    "ServerConfig",
    "load_scenario",
    "parse_scenario",
    "validate_scenario",
]


class AllAtOnce(FrozenModel):
    """Every agent starts at t=0."""

    kind: Literal["all_at_once"] = "all_at_once"


class Ramp(FrozenModel):
    """Agents start evenly spread over the first `duration_s`."""

    kind: Literal["ramp"] = "ramp"
    duration_s: Positive


class Waves(FrozenModel):
    """Agents start in `waves` equal groups, the first at t=0, then every `interval_s`."""

    kind: Literal["wave"] = "wave"
    waves: Annotated[int, Whole] = Field(ge=1, le=1_000_000, strict=True)
    interval_s: Positive


Arrival = Annotated[AllAtOnce | Ramp | Waves, by_kind({"all_at_once": AllAtOnce, "ramp": Ramp, "wave": Waves})]


class TaskWave(FrozenModel):
    """`count` tasks created at `at_s`."""

    at_s: NonNegative
    count: Annotated[int, Whole] = Field(ge=1, strict=True)


class TaskWaves(FrozenModel):
    """At each `at_s` the operator creates (and starts) up to `count` tasks, on agents with none."""

    kind: Literal["waves"] = "waves"
    waves: tuple[TaskWave, ...] = ()

    @model_validator(mode="after")
    def _in_time_order(self) -> TaskWaves:
        rules(
            [
                (f"waves.{i}.at_s", f"expected waves in time order, got {b.at_s} after {a.at_s}")
                for i, (a, b) in enumerate(zip(self.waves, self.waves[1:]), start=1)
                if b.at_s < a.at_s
            ]
        )
        return self


class TaskRate(FrozenModel):
    """From `start_s` on, the operator creates tasks as a Poisson stream of `per_s` per second."""

    kind: Literal["rate"] = "rate"
    per_s: Positive
    start_s: NonNegative = 0.0


Tasks = Annotated[TaskWaves | TaskRate, by_kind({"waves": TaskWaves, "rate": TaskRate})]


class FleetConfig(FrozenModel):
    """The source servers: how many, when their agents start, their OS and disk size."""

    agents: Annotated[int, Whole] = Field(ge=1, strict=True)  # the machine's limit: sim.scenario_limits
    arrival: Arrival = AllAtOnce()
    os_mix: dict[OsType, Fraction] = {OsType.LINUX: 1.0}  # fractions of agents, summing to 1
    linux_block_fraction: Fraction = 0.0  # Linux tasks that are MIGRATE_BLOCK; Windows always is
    disk_gb: PositiveDist = LogNormal(40.0, 0.6)

    @model_validator(mode="after")
    def _mix_sums_to_one(self) -> FleetConfig:
        total = sum(self.os_mix.values())
        rules([("os_mix", f"expected fractions summing to 1, got {total:g}")] if abs(total - 1) > 1e-6 else [])
        return self


class AgentConfig(FrozenModel):
    """How every agent behaves; distributions are sampled per agent or per subtask by the agent model."""

    poll_interval_s: Positive = 5.0
    poll_jitter_s: NonNegative = 0.0  # each interval is poll_interval_s + U(-jitter, +jitter)
    progress_interval_s: Positive = 2.0
    progress_jitter_s: NonNegative = 0.0  # each report's interval is progress_interval_s + U(-jitter, +jitter)
    bandwidth_mbps: PositiveDist = LogNormal(800.0, 0.4)
    subtask_s: NonNegativeDist = Uniform(0.5, 2.0)  # each non-transfer subtask
    failure_probability: Fraction = 0.0  # a migration fails partway through its transfer
    upload_log_s: NonNegativeDist = Constant(1.0)
    sync_fraction: Fraction = 0.1  # a SYNC transfers this fraction of the disk
    request_timeout_s: Positive = 10.0
    retry: RetryField = RetryPolicy()
    # How a load-test agent holds its HTTP connection: one kept alive between requests, or a new
    # one (TCP, and TLS for an https host) for every request. The simulation's server model does
    # not tell the two apart.
    connection: Literal["keep_alive", "per_poll"] = "keep_alive"

    @model_validator(mode="after")
    def _jitter_below_interval(self) -> AgentConfig:
        rules(
            [
                (f"{kind}_jitter_s", f"expected less than {kind}_interval_s ({interval}), got {jitter}")
                for kind, interval, jitter in (
                    ("poll", self.poll_interval_s, self.poll_jitter_s),
                    ("progress", self.progress_interval_s, self.progress_jitter_s),
                )
                if jitter >= interval
            ]
        )
        return self


class OperatorConfig(FrozenModel):
    """The operator driving tasks through their lifecycle: create, start, stop, sync, collect logs, delete."""

    tasks: Tasks = TaskWaves()
    check_interval_s: Positive = 2.0  # how often the operator looks at task states
    sync_after_s: NonNegative = 5.0  # a SYNC this long after MIGRATE_SUCCESS
    stop_probability: Fraction = 0.0  # per task: stopped once while running, started again after resume_after_s
    resume_after_s: NonNegative = 3.0
    restart_probability: Fraction = 1.0  # per failure: the failed migration is restarted
    log_collect_probability: Fraction = 0.0  # per task
    log_bucket: str = Field(default="sms-logs", min_length=1)
    delete_at_end: bool = True  # delete each task when its life ends (synced, or failed and not restarted)


class OutageFault(FrozenModel):
    """The server is down for `duration_s` from `start_s`: connections refused, or 503 from a front end."""

    kind: Literal["outage"] = "outage"
    start_s: NonNegative
    duration_s: Positive
    mode: OutageMode = OutageMode.REFUSED


class LatencyFault(FrozenModel):
    """Every request arriving for `duration_s` from `start_s` is delayed by `added_ms` (a distribution, ms)."""

    kind: Literal["latency"] = "latency"
    start_s: NonNegative
    duration_s: Positive
    added_ms: PositiveDist


class ErrorRateFault(FrozenModel):
    """A `fraction` of the requests arriving for `duration_s` from `start_s` are answered `status` at once."""

    kind: Literal["error_rate"] = "error_rate"
    start_s: NonNegative
    duration_s: Positive
    fraction: Fraction
    status: Literal[500, 503] = 503


class SlowStoreFault(FrozenModel):
    """Every store write (and read, unless `writes_only`) in the window takes `added_ms` longer, holding its worker."""

    kind: Literal["slow_store"] = "slow_store"
    start_s: NonNegative
    duration_s: Positive
    added_ms: PositiveDist
    writes_only: bool = True


class AgentRestartFault(FrozenModel):
    """A `fraction` of the agents restart, each at a moment in the window; down `down_s`, then register again."""

    kind: Literal["agent_restart"] = "agent_restart"
    start_s: NonNegative
    duration_s: Positive
    fraction: Fraction
    down_s: NonNegative = 5.0


ServerFault = OutageFault | LatencyFault | ErrorRateFault | SlowStoreFault  # the server's timeline
Fault = Annotated[
    ServerFault | AgentRestartFault,
    by_kind(
        {
            "outage": OutageFault,
            "latency": LatencyFault,
            "error_rate": ErrorRateFault,
            "slow_store": SlowStoreFault,
            "agent_restart": AgentRestartFault,
        }
    ),
]


def _fault(f: ServerFault) -> Outage | Latency | ErrorRate | SlowStore:
    """A scenario's fault as the executors apply it (sim.model.faults)."""
    if isinstance(f, OutageFault):
        return Outage(f.start_s, f.duration_s, f.mode)
    if isinstance(f, LatencyFault):
        return Latency(f.start_s, f.duration_s, f.added_ms)
    if isinstance(f, SlowStoreFault):
        return SlowStore(f.start_s, f.duration_s, f.added_ms, f.writes_only)
    return ErrorRate(f.start_s, f.duration_s, f.fraction, f.status)


def _slo_text(text: str) -> str:
    """An SLO expression that `sim.slo.parse_slo` reads (kept as text: the file form round-trips)."""
    try:
        parse_slo(text)
    except SloError as exc:
        fail(str(exc))
    return text


SloText = Annotated[str, AfterValidator(_slo_text)]


class Scenario(FrozenModel):
    """One experiment: fleet, agent behaviour, operator workload and simulated server, for `duration_s`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # used in run directory names
    description: str = ""
    seed: Annotated[int, Whole] = Field(
        default=0, ge=0, lt=2**63, strict=True
    )  # every random stream of a run derives from it
    duration_s: Positive
    fleet: FleetConfig
    agent: AgentConfig = AgentConfig()
    operator: OperatorConfig = OperatorConfig()
    server: ServerConfig = ServerConfig()
    faults: tuple[Fault, ...] = ()  # in time order, not overlapping (see sim.model.faults)
    slo: tuple[SloText, ...] = ()  # objectives (sim.slo): sweeps find the largest fleet meeting them all
    # Only operations a public API version documents (no `sync` task action; README, "Extensions").
    # None: decided by where the run goes: on against --host, off for the simulation and the
    # embedded reference server (`resolve_public_api`).
    public_api_only: bool | None = None

    @model_validator(mode="after")
    def _within_the_run(self) -> Scenario:
        end, problems = self.duration_s, []
        arrival, tasks = self.fleet.arrival, self.operator.tasks
        if isinstance(arrival, Ramp) and arrival.duration_s > end:
            problems.append(
                ("fleet.arrival.duration_s", f"expected at most duration_s ({end}), got {arrival.duration_s}")
            )
        if isinstance(arrival, Waves) and (arrival.waves - 1) * arrival.interval_s >= end:
            problems.append(
                (
                    "fleet.arrival.interval_s",
                    f"expected the last wave before duration_s ({end}), "
                    f"got it at {(arrival.waves - 1) * arrival.interval_s}",
                )
            )
        if isinstance(tasks, TaskWaves):
            problems += [
                (f"operator.tasks.waves.{i}.at_s", f"expected before duration_s ({end}), got {w.at_s}")
                for i, w in enumerate(tasks.waves)
                if w.at_s >= end
            ]
        if isinstance(tasks, TaskRate) and tasks.start_s >= end:
            problems.append(("operator.tasks.start_s", f"expected before duration_s ({end}), got {tasks.start_s}"))
        last: int | None = None  # the server's faults are one timeline; agent restarts may overlap anything
        for i, fault in enumerate(self.faults):
            if fault.start_s >= end:
                problems.append((f"faults.{i}.start_s", f"expected before duration_s ({end}), got {fault.start_s}"))
            if isinstance(fault, AgentRestartFault):
                continue
            if last is not None and fault.start_s < self.faults[last].start_s + self.faults[last].duration_s:
                problems.append(
                    (
                        f"faults.{i}.start_s",
                        f"expected after the end of fault {last}, in time order, got {fault.start_s}",
                    )
                )
            last = i
        agent = self.agent
        problems += steady_pollers_stay_connected(self.server.liveness, agent.poll_interval_s, agent.poll_jitter_s)
        rules(problems)
        return self

    def resolve_public_api(self, external: bool) -> Scenario:
        """This scenario with `public_api_only` decided: as given, else on for an `external` server."""
        if self.public_api_only is not None:
            return self
        return self.model_copy(update={"public_api_only": external})

    def fault_timeline(self) -> FaultTimeline:
        """The faults as the executors apply them (sim.model.faults)."""
        return FaultTimeline(tuple(_fault(f) for f in self.faults if not isinstance(f, AgentRestartFault)))

    def agent_restarts(self) -> tuple[AgentRestart, ...]:
        """The faults that restart agents (sim.model.faults.AgentRestart), which the agents apply."""
        return tuple(
            AgentRestart(f.start_s, f.duration_s, f.fraction, f.down_s)
            for f in self.faults
            if isinstance(f, AgentRestartFault)
        )

    @property
    def expected_polls_per_s(self) -> float:
        """Steady-state poll rate: the jitter is symmetric, so the mean interval is poll_interval_s."""
        return self.fleet.agents / self.agent.poll_interval_s

    def to_dict(self) -> dict[str, Any]:
        """The resolved scenario in file form (defaults filled in), JSON-able, for run manifests."""
        return self.model_dump(mode="json")

    def with_overrides(
        self,
        *,
        agents: int | None = None,
        duration_s: float | None = None,
        seed: int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Scenario:
        """A new validated Scenario; `fields` sets any field by dotted path ("agent.poll_interval_s")."""
        data = self.to_dict()
        changes = {"fleet.agents": agents, "duration_s": duration_s, "seed": seed, **(fields or {})}
        for path, value in changes.items():
            if value is None:
                continue
            *parents, leaf = path.split(".")
            node: Any = data
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ScenarioError([(path, "expected a path to a field of the scenario")], source="override")
            node[leaf] = value
        return validate_scenario(data, source="override")


def validate_scenario(data: Any, source: str | None = None) -> Scenario:
    """Validate parsed data (a mapping) into a Scenario, or raise ScenarioError with every problem."""
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else f"a {type(data).__name__}"
        raise ScenarioError(
            [("", f"expected a mapping of scenario fields (name, duration_s, fleet, ...), got {got}")], source
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(problems_from(exc, Scenario, data), source) from None
    except RecursionError:  # data built in Python (YAML files are checked for depth first)
        raise ScenarioError([("", f"nested more than {MAX_DEPTH} levels deep")], source) from None
    problems = limit_problems(scenario)
    if problems:
        raise ScenarioError(problems, source)
    return scenario


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse YAML text into a Scenario, or raise ScenarioError (syntax errors carry line and column)."""
    return validate_scenario(load_yaml(text, source), source)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every problem comes back in one ScenarioError."""
    return parse_scenario(read_scenario_text(path), str(path))
