"""`smsload capacity SWEEP_DIR` and `smsload capacity RUN RUN ...`: the capacity answer, written and printed.

Given a sweep directory (from `smsload sweep`), it writes there `capacity.csv` (per
configuration: the largest fleet meeting the SLO and its 95 % interval), `capacity_points.csv`
(every fleet size beside Erlang C and MVA), `capacity.png` (the knee plot) and `capacity.md`
(both tables and how to read them), and prints the tables. Given run directories of load tests
at several fleet sizes, it fits the Universal Scalability Law and writes `usl.csv`, `usl.png`
and `usl.md`, beside the sweep's simulated throughput when a sweep is given too.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from sim.cli_support import UsageError, add_command

_WIDE = {"mean_lo", "mean_hi", "replications", "theory_applies", "mva_throughput_per_s", "erlang_c_max_agents"}
_WIDE |= {"busy_fraction"}


def register(sub: Any) -> None:
    p = add_command(
        sub,
        "capacity",
        help="the largest fleet meeting the SLO per configuration (from a sweep); USL fit of load tests",
        description="From a sweep directory: per server configuration and poll interval, the largest fleet "
        "meeting every SLO with a 95% interval (interpolated on log fleet size between grid points, the "
        "interval from the replications), the knee plot, and Erlang C / MVA beside each point, flagged "
        "where simulation and theory disagree. From load-test run directories at several fleet sizes: "
        "the Universal Scalability Law fitted with bootstrap intervals, and its extrapolation.",
        examples=[
            "smsload capacity runs/sweep --slo 'p99 of poll < 50 ms' --slo 'error rate < 0.1%'",
            "smsload capacity runs/sweep runs/load-1k runs/load-2k runs/load-4k   # the USL beside the simulation",
        ],
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a sweep directory and/or run directories")
    p.add_argument("--slo", action="append", default=[], metavar="EXPR", help="objective (repeatable); see sim/slo.py")
    p.add_argument(
        "--out", type=Path, help="where to write (default: the sweep directory, else the first run's parent)"
    )
    p.add_argument("--resamples", type=int, default=500, help="bootstrap resamples of the USL fit (default 500)")
    p.set_defaults(func=_main)


def _kind(path: Path) -> str:
    if (path / "sweep.parquet").exists():
        return "sweep"
    if (path / "manifest.json").exists():
        return "run"
    raise UsageError(f"{path} is neither a sweep directory (sweep.parquet) nor a run directory (manifest.json)")


def sweep_slo(sweep_dir: Path, given: list[str]) -> list[str]:
    """The objectives to use: those given, else the sweep's (sweep.json), else its scenario's."""
    if given:
        return given
    meta = json.loads((sweep_dir / "sweep.json").read_text()) if (sweep_dir / "sweep.json").exists() else {}
    return list(meta.get("slo") or meta.get("scenario", {}).get("slo") or [])


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sim.slo import SloError, parse_slo

    if args.resamples < 100:
        raise UsageError(f"--resamples must be at least 100, got {args.resamples}")
    try:
        for text in args.slo:
            parse_slo(text)
    except SloError as exc:
        raise UsageError(f"--slo: {exc}") from None
    kinds = [(p, _kind(p)) for p in args.paths]
    sweeps = [p for p, k in kinds if k == "sweep"]
    runs = [p for p, k in kinds if k == "run"]
    if len(sweeps) > 1:
        raise UsageError(f"give at most one sweep directory, got {len(sweeps)}: {', '.join(map(str, sweeps))}")
    out = args.out or (sweeps[0] if sweeps else runs[0].parent)
    out.mkdir(parents=True, exist_ok=True)
    console = Console(width=max(Console().width, 140))
    if sweeps:
        write_capacity(sweeps[0], sweep_slo(sweeps[0], args.slo), console, out=out)
    if runs:
        _write_usl(runs, sweeps[0] if sweeps else None, out, args.resamples, console)
    return 0


def write_capacity(sweep_dir: Path, slo: list[str], console: Any, out: Path | None = None) -> list[Path]:
    """Write the capacity files of a sweep into `out` (default: the sweep) and print its tables."""
    from sim.report.capacity_page import capacity_markdown, print_frame
    from sim.report.capacity_sweep import capacity_table, config_columns, knee_figure, load_sweep
    from sim.report.capacity_theory import points_table

    out = out or sweep_dir
    df = load_sweep(sweep_dir)
    if df.empty:
        raise UsageError(f"{sweep_dir}: no finished points yet")
    points = points_table(df, slo)
    points.to_csv(out / "capacity_points.csv", index=False)
    shown = [c for c in points.columns if c not in _WIDE]  # the file has every column
    print_frame(console, points[shown], "Sweep points beside Erlang C (p99) and MVA (mean)")
    if not slo:
        console.print("no SLO (give --slo, or slo: in the scenario): no capacity table", highlight=False)
        return [out / "capacity_points.csv"]
    table = capacity_table(df, slo)
    if "erlang_c_max_agents" in points:  # the theory's answer beside the simulation's, per configuration
        cols = config_columns(df)
        theory = points.groupby(cols, dropna=False)["erlang_c_max_agents"].first().reset_index()
        table = table.merge(theory, on=cols, how="left")
    table.to_csv(out / "capacity.csv", index=False)
    knee_figure(df, slo, table).savefig(out / "capacity.png", dpi=110)
    (out / "capacity.md").write_text(capacity_markdown(table, points, slo), encoding="utf-8")
    print_frame(
        console, table.drop(columns="slo"), f"Capacity: the largest fleet meeting {'; '.join(slo)} (95% interval)"
    )
    written = [out / name for name in ("capacity.csv", "capacity_points.csv", "capacity.png", "capacity.md")]
    console.print("wrote " + ", ".join(str(p) for p in written), highlight=False, soft_wrap=True)
    return written


def _write_usl(runs: list[Path], sweep_dir: Path | None, out: Path, resamples: int, console: Any) -> None:
    import pandas as pd

    from sim.report.capacity_page import print_frame, usl_markdown
    from sim.report.capacity_usl import UslError, fit_usl, run_level, usl_figure

    levels: dict[float, Any] = {}
    try:
        for run in runs:
            agents, per_second = run_level(run)
            if agents in levels:
                raise UsageError(f"two runs at {agents} agents ({run}); give one run per fleet size")
            levels[agents] = per_second
        fit = fit_usl(levels, n_boot=resamples)
    except (UslError, OSError) as exc:
        raise UsageError(str(exc)) from None
    sim_thr = None
    if sweep_dir is not None:
        from sim.report.capacity_sweep import config_columns, load_sweep

        df = load_sweep(sweep_dir)
        cols = config_columns(df)
        # all requests per second, as the load tests count them
        df = df.assign(throughput_per_s=[json.loads(t)["requests"]["throughput_per_s"] for t in df["summary_json"]])
        names = [c.rsplit(".", 1)[-1] for c in cols]
        df["label"] = [", ".join(f"{n}={v}" for n, v in zip(names, vals)) for vals in df[cols].itertuples(index=False)]
        sim_thr = df.groupby(["label", "agents"], as_index=False)["throughput_per_s"].mean()
    table = fit.table()
    peak = fit.peak_agents
    table = pd.concat([table, pd.DataFrame([{"parameter": "peak_agents", "estimate": peak}])], ignore_index=True)
    table.to_csv(out / "usl.csv", index=False)
    usl_figure(fit, sim_thr).savefig(out / "usl.png", dpi=110)
    (out / "usl.md").write_text(usl_markdown(fit), encoding="utf-8")
    print_frame(console, fit.levels, "Load-test levels (requests per second after the warm-up)")
    print_frame(console, table, "Universal Scalability Law fit (95% bootstrap intervals)")
    console.print(
        f"peak throughput at about {peak:,.0f} agents" if math.isfinite(peak) else "no throughput peak (kappa = 0)",
        highlight=False,
    )
    console.print(f"wrote {out / 'usl.csv'}, {out / 'usl.png'}, {out / 'usl.md'}", highlight=False, soft_wrap=True)
