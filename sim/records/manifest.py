"""manifest.json: what a run was, where and when it ran, and how it ended; one set of fields for every executor.

The fields are listed, with their meaning for each executor, in the package docstring
(`sim.records`) and in README.md ("The run directory"). Every field is present from the
moment the run starts; those only known at the end are null until then.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from sim import __version__
from sim.scenario import Scenario

#: The clock of each executor's times (`t_*_s` columns, `duration_s`).
CLOCKS = {"des": "virtual", "fast": "virtual", "locust": "wall"}


def versions() -> dict[str, str]:
    """Versions of this package, Python and the libraries a run's results depend on."""
    out = {"smsload": __version__, "python": sys.version.split()[0]}
    for dist in ("simpy", "locust", "pyarrow", "pandas", "numpy", "starlette", "granian", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def t0_epoch_of(manifest: dict[str, Any]) -> float | None:
    """Epoch seconds of the run's t = 0: a load test's `t0_epoch`, else (a simulation, whose clock is
    virtual) the wall-clock time it started (`started_at`), so its times can be shown as dates; None if
    neither is known."""
    t0 = manifest.get("t0_epoch")
    if isinstance(t0, (int, float)):
        return float(t0)
    started = manifest.get("started_at")
    try:
        return datetime.fromisoformat(str(started)).timestamp() if started else None
    except ValueError:
        return None


def new_manifest(
    scenario: Scenario, executor: str, run_id: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest of a run that starts now (`complete` false). `fields` (executor-specific or
    known at the start: target, t0_epoch, ...) win over the defaults; they must never hold a token."""
    return {
        "run_id": run_id,
        "executor": executor,
        "clock": CLOCKS.get(executor, "wall"),
        "seed": scenario.seed,
        "agents": scenario.fleet.agents,
        "planned_duration_s": scenario.duration_s,
        "scenario": scenario.to_dict(),
        "versions": versions(),
        "host": {"name": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "target": None,
        "t0_epoch": None,
        "started_at": now_iso(),
        "ended_at": None,
        "complete": False,
        "duration_s": None,
        "wall_s": None,
        "requests": None,
        "server_tables": None,
        "latency_histograms": None,
        **(fields or {}),
    }
