"""Run directories for the report tests: one real simulation run and edited copies of it.

`smsload sim quickstart` runs once per session (about a second); each copy
changes one thing a report must notice: the run marked incomplete, 5 % of requests failed,
every latency 1.5 times longer, the run dressed as a load test whose generator was saturated
(CPU at 95 %, lag growing), or no requests at all.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim.records import REQUEST_SCHEMA

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "sim" / "scenarios" / "quickstart.yaml"
POLL = "GET /v1/sms/sources/{source_id}/command"


def smsload(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The real command line, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "sim.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _edit(
    src: Path,
    dst: Path,
    requests: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    manifest: dict[str, Any] | None = None,
) -> Path:
    """A copy of run `src` at `dst`, with its requests table and manifest edited."""
    shutil.copytree(src, dst)
    if requests is not None:
        table = pq.read_table(dst / "requests.parquet").to_pandas()
        edited = requests(table)
        pq.write_table(
            pa.Table.from_pandas(edited, schema=REQUEST_SCHEMA, preserve_index=False), dst / "requests.parquet"
        )
    if manifest:
        m = json.loads((dst / "manifest.json").read_text())
        m.update(manifest)
        (dst / "manifest.json").write_text(json.dumps(m, indent=2))
    for page in ("report.html", "compare.html"):
        (dst / page).unlink(missing_ok=True)
    return dst


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> run directory: sim, incomplete, errors, slow, saturated, empty (no requests, incomplete)."""
    base = tmp_path_factory.mktemp("report-runs")
    sim = base / "sim"
    done = smsload("sim", str(QUICKSTART), "--out", str(sim), "--quiet")
    assert done.returncode == 0, done.stderr
    run_id = json.loads((sim / "manifest.json").read_text())["run_id"]

    def failing(r: pd.DataFrame) -> pd.DataFrame:
        bad = np.arange(len(r)) % 20 == 0  # 5 % of the requests, on every endpoint
        r["error"] = r["error"].astype(object)  # a categorical takes no new value
        r.loc[bad, ["status", "ok", "error"]] = [500, False, "SMS.9999"]
        return r

    def slower(r: pd.DataFrame) -> pd.DataFrame:
        r["latency_ms"] *= 1.5
        return r

    def load_test(r: pd.DataFrame) -> pd.DataFrame:
        # A generator falling behind: requests leave later and later, up to 2 s late at the end.
        r["t_start_s"] = r["t_sched_s"] + r["t_sched_s"] / 30.0
        r["queue_wait_ms"] = np.nan
        r["executor"] = "locust"
        return r

    out = {
        "sim": sim,
        "incomplete": _edit(sim, base / "incomplete", manifest={"complete": False}),
        "errors": _edit(sim, base / "errors", failing, {"run_id": f"{run_id}-errors"}),
        "slow": _edit(sim, base / "slow", slower, {"run_id": f"{run_id}-slow"}),
        "saturated": _edit(sim, base / "saturated", load_test, {"run_id": f"{run_id}-locust", "executor": "locust"}),
        "empty": _edit(sim, base / "empty", lambda r: r.iloc[:0], {"run_id": f"{run_id}-empty", "complete": False}),
    }
    t = np.arange(1.0, 61.0)
    pq.write_table(
        pa.table(
            {
                "t_s": t,
                "process": ["local"] * len(t),
                "cpu_percent": np.full(len(t), 95.0),
                "rss_mb": np.full(len(t), 150.0),
                "users": np.full(len(t), 201, np.int32),
            }
        ),
        out["saturated"] / "generator.parquet",
    )
    return out
