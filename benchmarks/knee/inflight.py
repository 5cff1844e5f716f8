"""How long polls and progress writes waited, by the number of requests in flight when each was sent.

    .venv/bin/python benchmarks/knee/inflight.py RUN [RUN ...] [--after-s 40] [--brief]

For each run directory (a load test or a simulation of the same scenario), over the requests
sent after `--after-s`: the mean number of requests in flight (sent and not yet answered, the
request itself not counted) when a poll and when a progress write was sent, and the mean wait
beyond the server's own time (latency - server_ms: queue, body hand-over, round trip) of each,
by that number. Two runs that agree by number in flight but not in their means met the server in
different states: the requests' timing differs, not the server model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rig import POLL, PROGRESS  # noqa: E402

from sim.records.load import RunDirError, load_run  # noqa: E402
from sim.report.calibrate_requests import in_flight  # noqa: E402

KINDS = {"poll": POLL, "progress": PROGRESS}


def by_inflight(requests: pd.DataFrame, after_s: float, cap: int = 6) -> tuple[dict[str, float], pd.DataFrame]:
    """A run's requests table -> (mean in flight when sent, per kind; per in-flight number (capped
    at `cap`), each kind's mean wait beyond server_ms and count). Answered requests only."""
    r = requests[requests["ok"]]
    frame = pd.DataFrame(
        {
            "endpoint": r["endpoint"].astype(str).to_numpy(),
            "inflight": in_flight(r),
            "beyond_ms": (r["latency_ms"] - r["server_ms"]).to_numpy(dtype=float),
        }
    )[r["t_start_s"].to_numpy(dtype=float) >= after_s]
    means, columns = {}, {}
    for kind, endpoint in KINDS.items():
        rows = frame[frame["endpoint"] == endpoint]
        means[kind] = float(rows["inflight"].mean()) if len(rows) else float("nan")
        groups = rows.groupby(rows["inflight"].clip(upper=cap))["beyond_ms"]
        columns[f"{kind} ms"], columns[f"{kind} n"] = groups.mean(), groups.size()
    table = pd.DataFrame(columns).fillna({"poll n": 0, "progress n": 0})
    table.index.name = f"in flight (>= {cap} as {cap})"
    return means, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories")
    p.add_argument("--after-s", type=float, default=40.0, help="only requests sent after this (default 40)")
    p.add_argument("--brief", action="store_true", help="only the mean in flight of each run, a line each")
    args = p.parse_args(argv)
    for run in args.runs:
        try:
            requests = load_run(run).requests
        except RunDirError as exc:
            p.error(f"{run}: {exc}")
        means, table = by_inflight(requests, args.after_s)
        print(f"{run}: mean in flight when sent: poll {means['poll']:.2f}, progress {means['progress']:.2f}")
        if not args.brief:
            print(table.round(2).to_string(), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
