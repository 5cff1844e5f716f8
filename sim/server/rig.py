"""The knee rig: limits that make the reference server, not the load generator, the bottleneck.

On one machine a Python load generator (Locust, ~1 ms of CPU per request) cannot outrun a
server that answers a poll in ~0.1 ms, so measurements taken there show the generator's queue,
not the server's. `smsload serve` can therefore be limited three ways, each an option:

- `--store-latency-ms SPEC` (`StoreLatency`): a blocking delay drawn per store transaction,
  standing for a remote database. The worker's event loop is blocked for it, so one worker is
  one server of an M/G/1 queue whose capacity (a few hundred requests/s) the generator can
  exceed on half a core. The cleanest queue: the service time is known and does not depend on
  the load.
- `--cpus LIST` (`pin_cpus`): the server's processes on these cores only (sched_setaffinity,
  inherited by the workers), so the generator can have the others.
- `--cpu-quota FRACTION` (`CpuQuota`): a CFS quota on the server's process group (cgroup v1
  `cpu.cfs_quota_us`, or v2 `cpu.max`), the most "real" limit. A quota makes a server fast
  at low load (it runs at full speed within its share) and slow when busy (it waits out the
  rest of each period), so no single service-time distribution fits both; a short period
  (1 ms by default) keeps those waits small against a request.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.model.distributions import Constant, Distribution, Exponential, LogNormal

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEFAULT_PERIOD_US = 1000


class RigError(ValueError):
    """A rig option that cannot be applied (bad value, no cgroup allowed); one line for the user."""


def parse_latency(spec: str) -> Distribution:
    """`lognormal:MEDIAN,SIGMA`, `exponential:MEAN`, `constant:MS` or a bare number of ms."""
    kind, _, params = spec.partition(":")
    try:
        if not params:
            return Constant(float(kind))
        values = [float(v) for v in params.split(",")]
        if kind == "lognormal" and len(values) == 2 and values[0] > 0 and values[1] >= 0:
            return LogNormal(values[0], values[1])
        if kind == "exponential" and len(values) == 1 and values[0] > 0:
            return Exponential(values[0])
        if kind == "constant" and len(values) == 1 and values[0] >= 0:
            return Constant(values[0])
    except ValueError:
        pass
    raise RigError(
        f"--store-latency-ms: expected lognormal:MEDIAN,SIGMA, exponential:MEAN or constant:MS (ms), got {spec!r}"
    )


class _DelayedUnit:
    """A store transaction that first waits out one draw of the store's latency (blocking)."""

    __slots__ = ("inner", "delay")

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def __enter__(self) -> Any:
        # Blocking on purpose: the event loop stops as a worker waiting on a synchronous
        # database driver would, so the worker is one busy server for the whole transaction.
        time.sleep(self.delay)
        return self.inner.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)


class DelayedStore:
    """A store whose every `read()`/`write()` transaction costs a latency drawn from `latency_ms`."""

    def __init__(self, store: Any, latency_ms: Distribution, seed: int | None = None) -> None:
        self._store, self._latency = store, latency_ms
        self._rng = random.Random(seed)

    def read(self) -> _DelayedUnit:
        return _DelayedUnit(self._store.read(), self._latency.sample(self._rng) / 1000.0)

    def write(self) -> _DelayedUnit:
        return _DelayedUnit(self._store.write(), self._latency.sample(self._rng) / 1000.0)

    def __getattr__(self, name: str) -> Any:  # commands(), events(), close(), ...: the store's own
        return getattr(self._store, name)


def parse_cpus(spec: str) -> set[int]:
    """`1`, `0,2` or `2-3`: cores this machine has."""
    cpus: set[int] = set()
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise RigError(f"--cpus: expected core numbers such as 1, 0,2 or 2-3, got {spec!r}") from None
    have = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    if not cpus or not cpus <= have:
        raise RigError(f"--cpus {spec}: this process may use cores {sorted(have)}")
    return cpus


def pin_cpus(cpus: set[int]) -> None:
    """This process (and the workers it starts later) on `cpus` only."""
    try:
        os.sched_setaffinity(0, cpus)
    except (AttributeError, OSError) as exc:
        raise RigError(f"--cpus: cannot pin the server to cores {sorted(cpus)}: {exc}") from None


@dataclass
class CpuQuota:
    """A cgroup that holds this process (and the workers it starts) to `fraction` of one core."""

    fraction: float
    period_us: int = DEFAULT_PERIOD_US
    root: Path = CGROUP_ROOT
    path: Path | None = None  # the cgroup made, once applied

    def apply(self) -> None:
        if not 0.01 <= self.fraction <= (os.cpu_count() or 1):
            raise RigError(f"--cpu-quota: expected a fraction of one core 0.01..{os.cpu_count()}, got {self.fraction}")
        if not 1000 <= self.period_us <= 1_000_000:
            raise RigError(f"--cpu-period-us: expected 1000..1000000, got {self.period_us}")
        quota = max(1000, round(self.fraction * self.period_us))
        name = f"smsload-serve-{os.getpid()}"
        v1, v2 = self.root / "cpu", self.root / "cgroup.controllers"
        try:
            if (v1 / "cpu.cfs_quota_us").exists():
                self.path = v1 / name
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
            elif v2.exists() and "cpu" in v2.read_text().split():
                self.path = self.root / name
                self.path.mkdir(exist_ok=True)
                (self.path / "cpu.max").write_text(f"{quota} {self.period_us}")
            else:
                raise RigError("--cpu-quota: no writable cgroup cpu controller (v1 cpu/ or v2 cpu.max) on this machine")
            (self.path / "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            self.release()
            raise RigError(f"--cpu-quota: cannot set a cgroup CPU quota (needs root): {exc.strerror or exc}") from None

    def release(self) -> None:
        """Move this process back to the parent group and remove the cgroup (its workers are gone by now)."""
        if self.path is None:
            return
        try:
            (self.path.parent / "cgroup.procs").write_text(str(os.getpid()))
            self.path.rmdir()
        except OSError:
            pass  # a worker still inside: the empty group is left, named by this PID
        self.path = None


def throttled_s(path: Path | None) -> float:
    """Seconds the cgroup at `path` spent throttled so far (0 without one): the quota's evidence."""
    if path is None:
        return 0.0
    try:
        stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
    except (OSError, ValueError):
        return 0.0
    if "throttled_time" in stat:
        return int(stat["throttled_time"]) / 1e9
    return int(stat.get("throttled_usec", 0)) / 1e6
