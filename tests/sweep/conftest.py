"""A tiny scenario for sweeps: a few seconds of polling on one worker, where the knee comes at a few hundred agents.

Polls every second on one worker of 2 ms exponential service: 400 agents make utilisation
0.8, so a p99 objective of 20 ms is crossed inside the grid 50..400. Polls are read-only (no
write lock, liveness off) and there is no operator: the regime Erlang C and MVA describe.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
TINY = """\
name: tiny
seed: 5
duration_s: 20
fleet: {agents: 50, arrival: {kind: ramp, duration_s: 2}}
agent: {poll_interval_s: 1, poll_jitter_s: 0.1}
server:
  workers: 1
  service_ms: {default: {dist: exponential, mean: 2}}
  write_lock: false
  rtt_ms: 1
  liveness: {write: "off"}
slo: ["p99 of poll < 20 ms", "error rate < 1%"]
"""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scenario") / "tiny.yaml"
    path.write_text(TINY)
    return path


def smsload(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
