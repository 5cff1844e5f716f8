"""The `server:` section of a scenario: the simulated server's queueing model, and liveness.

One section configures both servers of a scenario: the simulated one (workers, service times,
the write lock, the network round trip) and, for `liveness`, the reference server that
`smsload load` starts, so that the simulation and the load test record agents' visits alike.

`service_ms` is keyed by endpoint name (`sim.model.intents.ENDPOINTS`), `default` (endpoints
not listed) and `poll_write`: a poll that writes (it records the agent's visit, or delivers a
command for the first time) costs a write, not a read, and takes the write lock. Unlisted, it
falls back to `default`, like any endpoint: the stand-in for a write the scenario has not
measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, PlainValidator, model_validator

from sim.model.distributions import Constant, Distribution, Exponential
from sim.model.intents import ENDPOINTS as _MODEL_ENDPOINTS
from sim.model.liveness import COALESCE_S, DISCONNECT_AFTER_S, Liveness, LivenessWrite
from sim.scenario_fields import FrozenModel, NonNegative, NonNegativeDist, Pick, Positive, Whole, fail, rules
from sim.scenario_yaml import Problem

# Keys of `server.service_ms`: the endpoint names the models use (sim.model.intents), and `default`.
ENDPOINTS: tuple[str, ...] = tuple(_MODEL_ENDPOINTS)
POLL_WRITE = "poll_write"  # a poll that writes: its own service time (see the module docstring)
ServiceKey = Literal[("default", *ENDPOINTS, POLL_WRITE)]  # type: ignore[valid-type]


def _write_mode(value: Any) -> Any:
    # YAML 1.1 (PyYAML) reads a bare `off` as false: `write: off` means what it says.
    return LivenessWrite.OFF if value is False else value


class _LivenessSpec(FrozenModel):
    write: Annotated[LivenessWrite, BeforeValidator(_write_mode)] = LivenessWrite.COALESCED
    coalesce_s: NonNegative = COALESCE_S
    disconnect_after_s: Positive = DISCONNECT_AFTER_S

    @model_validator(mode="after")
    def _disconnect_after_coalescing(self) -> _LivenessSpec:
        rules(
            [
                (
                    "disconnect_after_s",
                    f"expected more than coalesce_s ({self.coalesce_s}) with write: coalesced, "
                    f"got {self.disconnect_after_s}",
                )
            ]
            if self.write is LivenessWrite.COALESCED and self.disconnect_after_s <= self.coalesce_s
            else []
        )
        return self


def _parse_liveness(value: Any) -> Liveness:
    if isinstance(value, Liveness):
        return value
    if not isinstance(value, Mapping):
        fail(f"expected a mapping of write (every_poll, coalesced, off), coalesce_s, disconnect_after_s; got {value!r}")
    spec = _LivenessSpec.model_validate(value)
    return Liveness(spec.write, spec.coalesce_s, spec.disconnect_after_s)


LivenessField = Annotated[
    Liveness,
    PlainValidator(_parse_liveness),
    PlainSerializer(lambda v: v.to_dict(), return_type=dict),
    Pick(lambda _: _LivenessSpec),
]


class CalibratedAt(FrozenModel):
    """Where `smsload calibrate` fitted this server and how far that was checked (how far to trust it).

    `utilisation`: the busy fraction of the server's workers in the low-load run the service
    and round trip were fitted from; latency predictions are checked there. `probe_*`: the
    step-load probe that found the capacity (and the number of workers): its saturated
    throughput and its peak offered load over that capacity (above 1: it did saturate)."""

    run_id: str = ""
    utilisation: NonNegative = 0.0
    probe_run_id: str = ""
    capacity_per_s: NonNegative = 0.0
    probe_offered_over_capacity: NonNegative = 0.0


class ServerConfig(FrozenModel):
    """The simulated server: `workers` FIFO servers, service times per endpoint, one network RTT;
    and how polls record agents' visits (`liveness`), for the simulated and the reference server."""

    workers: Annotated[int, Whole] = Field(default=4, ge=1, le=100_000, strict=True)
    service_ms: dict[ServiceKey, NonNegativeDist] = {"default": Exponential(2.0)}  # `default`: endpoints not listed
    write_lock: bool = True  # one write at a time, as SQLite has
    rtt_ms: NonNegativeDist = Constant(0.0)
    # Coalesced by default, as a production control plane would (see sim.model.liveness).
    liveness: LivenessField = Liveness()
    # A request with a body (POST, PUT) leaves its worker once its headers are in (the handler
    # awaits the body) and queues again behind everything that arrived meanwhile, as on the one
    # asyncio event loop of a reference-server worker: this many times (`true` = 1; `smsload
    # calibrate` sets what the knee rig measured, sim.report.calibrate.BODY_PASSES).
    requeue_bodies: int = Field(default=0, ge=0, le=8)
    # Where such a request queues again: behind this share of the requests waiting (1: all of
    # them). On the reference server fresh requests reach the event loop through granian's
    # hand-over, and near saturation a good part of those waiting are still there, behind a
    # body's `receive()`, which resumes on the loop itself (sim.report.calibrate.REQUEUE_AT).
    requeue_at: float = Field(default=1.0, gt=0.0, le=1.0)
    # A request that finds a worker free as it reaches the server takes this long more (ms): the
    # worker, and the core under it, woke from idle. Back to back, as at saturation, none do
    # (`smsload calibrate`: where the probe's server took less per request than the low-load run's
    # handlers, the difference; on the knee rig's PostgreSQL store a poll's handler took 5.80 ms
    # at half load and 5.33 ms at saturation).
    idle_start_ms: NonNegative = 0.0
    calibrated: CalibratedAt | None = None  # set by `smsload calibrate`: where the fit holds

    @model_validator(mode="after")
    def _has_default(self) -> ServerConfig:
        rules(
            []
            if "default" in self.service_ms
            else [("service_ms.default", "expected a `default` entry, for endpoints not listed")]
        )
        return self

    def service_ms_for(self, endpoint: str) -> Distribution:
        """The service time of `endpoint` (or of `poll_write`): its own entry, else `default`."""
        if endpoint not in ENDPOINTS and endpoint != POLL_WRITE:
            raise KeyError(f"unknown endpoint {endpoint!r}; expected one of {', '.join((*ENDPOINTS, POLL_WRITE))}")
        return self.service_ms.get(endpoint, self.service_ms["default"])


def steady_pollers_stay_connected(live: Liveness, poll_interval_s: float, poll_jitter_s: float) -> list[Problem]:
    """An agent polling on time must never look disconnected: the longest gap between two
    recorded visits (the coalescing interval, just missed, plus the longest poll interval) must
    fit in `disconnect_after_s`. Problems with paths from the scenario's root."""
    if live.write is LivenessWrite.OFF:
        return []
    gap = poll_interval_s + poll_jitter_s + (live.coalesce_s if live.write is LivenessWrite.COALESCED else 0.0)
    if live.disconnect_after_s >= gap:
        return []
    terms = "coalesce_s + " if live.write is LivenessWrite.COALESCED else ""
    return [
        (
            "server.liveness.disconnect_after_s",
            f"expected at least {terms}agent.poll_interval_s + agent.poll_jitter_s ({gap:g}), got "
            f"{live.disconnect_after_s:g}: agents polling on time would show as disconnected",
        )
    ]
