"""Run ids and default run directories, for every executor.

A simulation is a deterministic function of its scenario and seed, so its run id is too:
the same scenario and seed give the same id (and identical tables). A load test is a
measurement, never repeated exactly: its id is unique (time of start and a random suffix).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

from sim.scenario import Scenario

DETERMINISTIC = frozenset({"des", "fast"})  # executors whose runs are a function of scenario and seed


def run_id_for(scenario: Scenario, executor: str) -> str:
    """NAME-EXECUTOR-seedN-HASH for a simulation; NAME-EXECUTOR-TIMESTAMP-RANDOM for a load test."""
    if executor in DETERMINISTIC:
        digest = hashlib.sha256(json.dumps(scenario.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
        return f"{scenario.name}-{executor}-seed{scenario.seed}-{digest}"
    return f"{scenario.name}-{executor}-{_stamp()}-{secrets.token_hex(3)}"


def default_out(scenario: Scenario, executor: str) -> Path:
    """Where a run goes when no directory is given: runs/NAME-EXECUTOR-TIMESTAMP under the working directory."""
    return Path("runs") / f"{scenario.name}-{executor}-{_stamp()}"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
