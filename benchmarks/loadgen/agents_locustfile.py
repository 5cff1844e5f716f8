"""The measured user: `loadtests/locustfile.py` exactly as shipped, plus the benchmark's probe."""

from __future__ import annotations

import probe  # noqa: F401  (the CPU/RSS/request-count probe)

from loadtests.locustfile import AgentUser, FleetShape, OperatorUser

__all__ = ["AgentUser", "FleetShape", "OperatorUser"]
