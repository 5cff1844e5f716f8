"""How long polls and progress writes waited, by the number of requests in flight when each was sent.

    .venv/bin/python benchmarks/knee/inflight.py RUN [RUN ...] [--after-s 40] [--brief] [--width 1] [--cap 6]

For each run directory (a load test or a simulation of the same scenario), over the requests
sent after `--after-s`: the mean number of requests in flight (sent and not yet answered, the
request itself not counted) when a poll and when a progress write was sent, and the mean wait
beyond the server's own time (latency - server_ms: queue, body hand-over, round trip) of each,
by that number (in groups of `--width`, the last one `--cap` and more), and the progress write's
wait over the poll's in each group. Two runs that agree by number in flight but not in their means
met the server in different states: the requests' timing differs, not the server model; two
that differ by number in flight model the server differently (at saturation, `--width 10 --cap
80`: RESULTS "Fidelity at the knee", where a body waits).
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


def by_inflight(
    requests: pd.DataFrame, after_s: float, cap: int = 6, width: int = 1
) -> tuple[dict[str, float], pd.DataFrame]:
    """A run's requests table -> (mean in flight when sent, per kind; per group of `width` in-flight
    numbers, named by its lowest (all from `cap` on in the last), each kind's mean wait beyond
    server_ms and count, and the progress write's mean wait over the poll's). Answered requests only."""
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
        groups = rows.groupby(rows["inflight"].clip(upper=cap) // width * width)["beyond_ms"]
        columns[f"{kind} ms"], columns[f"{kind} n"] = groups.mean(), groups.size()
    table = pd.DataFrame(columns).fillna({"poll n": 0, "progress n": 0})
    table["progress / poll"] = table["progress ms"] / table["poll ms"]
    table.index.name = (
        f"in flight (>= {cap} as {cap})" if width == 1 else f"in flight (from, by {width}; >= {cap} last)"
    )
    return means, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories")
    p.add_argument("--after-s", type=float, default=40.0, help="only requests sent after this (default 40)")
    p.add_argument("--brief", action="store_true", help="only the mean in flight of each run, a line each")
    p.add_argument("--width", type=int, default=1, help="in-flight numbers per group (default 1)")
    p.add_argument("--cap", type=int, default=6, help="the last group holds this many in flight and more (default 6)")
    args = p.parse_args(argv)
    if args.width < 1 or args.cap < 0:
        p.error(f"--width: expected 1 or more, --cap 0 or more; got {args.width} and {args.cap}")
    for run in args.runs:
        try:
            requests = load_run(run).requests
        except RunDirError as exc:
            p.error(f"{run}: {exc}")
        means, table = by_inflight(requests, args.after_s, args.cap, args.width)
        print(f"{run}: mean in flight when sent: poll {means['poll']:.2f}, progress {means['progress']:.2f}")
        if not args.brief:
            print(table.round(2).to_string(), end="\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
