"""The capacity answer from a sweep: the largest fleet meeting the SLO per configuration, with a 95 % interval.

A configuration is every varied field but the fleet size (workers, poll interval, ...). For
each, the fleet sizes of the grid are checked in order against every SLO at once: a point
passes when it meets all of them, and the capacity is where the fleet stops passing.

How the number and its interval are made:

1. Per replication, the worst SLO ratio (metric / limit for an upper limit: 1 at the limit,
   above 1 failing) at each fleet size; the crossing lies between the last fleet that passes
   (with every smaller one) and the first that fails, found by linear interpolation of the
   log ratio on log fleet size: a straight line between the two points of the knee plot
   (log-log axes), where latency near the knee grows roughly as a power of the fleet. A
   replication where the smallest fleet already fails has no crossing ("below grid"); one
   where the largest still passes is censored at the largest fleet ("above grid": the answer
   is at least that).
2. The estimate is the geometric mean of the replications' crossings; the 95 % interval is
   Student's t over their logarithms (mean +- t(0.975, R - 1) s / sqrt(R)). It is the spread
   between replications (seeds), which is what a re-run would vary; with two replications
   t is 12.7 and the interval honest but wide, with one there is none.

Beside each point, the queueing theory (`capacity_theory`): Erlang C for the poll's latency
quantile and approximate MVA for the closed loop's mean, flagged where the simulation
disagrees beyond its interval in the regime the theory holds in.

The notebook calls `load_sweep`, `capacity_table` and `knee_figure`; `smsload capacity`
writes them out (`sim.report.capacity_cli`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats as sps

from sim.report.figures import log_x, new_figure
from sim.slo import Slo, parse_slo

AGENTS = "fleet.agents"
_SHOWN = {"poll_interval_s": "agent.poll_interval_s", "workers": "server.workers"}  # always in the table
SloArg = str | Slo | Sequence[str | Slo]


def load_sweep(path: str | Path) -> pd.DataFrame:
    """sweep.parquet of a sweep directory (or the file itself); `attrs["sweep"]` holds its sweep.json."""
    path = Path(path)
    directory = path.parent if path.suffix == ".parquet" else path
    table = directory / "sweep.parquet"
    if not table.exists():
        raise FileNotFoundError(f"{directory} has no sweep.parquet (is it the --out of smsload sweep?)")
    df = pd.read_parquet(table)
    meta = directory / "sweep.json"
    df.attrs["sweep"] = json.loads(meta.read_text()) if meta.exists() else {}
    df.attrs["path"] = str(directory)
    return df


def slos_of(slo: SloArg) -> list[Slo]:
    """One or several objectives, parsed (SloError if one cannot be read)."""
    items = [slo] if isinstance(slo, (str, Slo)) else list(slo)
    return [s if isinstance(s, Slo) else parse_slo(s) for s in items]


def config_columns(df: pd.DataFrame) -> list[str]:
    """The columns that name a configuration: the varied fields except the fleet size."""
    varied = [v["path"] for v in df.attrs.get("sweep", {}).get("vary", [])]
    cols = [p for p in varied if p != AGENTS and p in df.columns]
    return cols or [c for c in ("poll_interval_s", "workers") if c in df.columns]


def slo_ratios(df: pd.DataFrame, slo: SloArg) -> pd.DataFrame:
    """Per row: `slo_ratio` (the worst objective's ratio, NaN as a miss) and `slo_ok` (meets them all)."""
    objectives = slos_of(slo)
    ratios, oks = [], []
    for text in df["summary_json"]:
        summary = json.loads(text)
        values = [o.value(summary) for o in objectives]
        r = [o.ratio(v) for o, v in zip(objectives, values)]
        ratios.append(max((math.inf if math.isnan(x) else x) for x in r) if r else 0.0)
        oks.append(all(o.passes(v) for o, v in zip(objectives, values)))
    return pd.DataFrame({"slo_ratio": ratios, "slo_ok": oks}, index=df.index)


def crossing(agents: np.ndarray, ratio: np.ndarray, ok: np.ndarray) -> tuple[float, str]:
    """Where one replication's fleet stops meeting the SLO (see the module docstring) and how it was found."""
    order = np.argsort(agents)
    agents, ratio, ok = agents[order].astype(float), ratio[order], ok[order]
    fails = np.flatnonzero(~ok)
    if fails.size == 0:
        return float(agents[-1]), "above grid"
    i = int(fails[0])
    if i == 0:
        return math.nan, "below grid"
    a, b, ra, rb = agents[i - 1], agents[i], ratio[i - 1], ratio[i]
    if not (math.isfinite(rb) and rb > ra):
        return float(a), "interpolated"  # nothing to interpolate on: the last passing fleet
    if ra > 0:  # log ratio on log fleet: a straight line on the knee plot's log-log axes
        t = (0.0 - math.log(ra)) / (math.log(rb) - math.log(ra))
    else:  # a ratio of 0 (no errors at all against an error-rate limit) has no logarithm
        t = (1.0 - ra) / (rb - ra)
    t = min(max(t, 0.0), 1.0)
    return float(math.exp(math.log(a) + t * (math.log(b) - math.log(a)))), "interpolated"


def log_t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(geometric mean, lo, hi): Student's t 95 % interval on the logarithms; no interval from one value."""
    logs = np.log(np.asarray(values, dtype=float))
    centre = float(np.exp(logs.mean()))
    if logs.size < 2:
        return centre, math.nan, math.nan
    half = float(sps.t.ppf(0.975, logs.size - 1) * logs.std(ddof=1) / math.sqrt(logs.size))
    return centre, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def capacity_table(sweep_df: pd.DataFrame, slo: SloArg) -> pd.DataFrame:
    """Per configuration: the largest fleet meeting every SLO, its 95 % interval, and how it was bounded."""
    objectives = slos_of(slo)
    cols = config_columns(sweep_df)  # before concat, which drops attrs (sweep.json)
    df = pd.concat([sweep_df, slo_ratios(sweep_df, objectives)], axis=1)
    rows = []
    for config, group in df.groupby(cols, sort=True, dropna=False):
        found = [
            crossing(rep["agents"].to_numpy(), rep["slo_ratio"].to_numpy(), rep["slo_ok"].to_numpy())
            for _, rep in group.groupby("replication", sort=True)
        ]
        bounds = {how for _, how in found}
        values = [v for v, _ in found if not math.isnan(v)]
        estimate, lo, hi = log_t_interval(values) if values and "below grid" not in bounds else (math.nan,) * 3
        bound = "below grid" if "below grid" in bounds else "above grid" if "above grid" in bounds else "interpolated"
        key = config if isinstance(config, tuple) else (config,)
        rows.append(
            {
                **dict(zip(cols, key)),
                **{short: group[short].iloc[0] for short, path in _SHOWN.items() if path not in cols},
                "replications": len(found),
                "max_agents": estimate,
                "max_agents_lo": lo,
                "max_agents_hi": hi,
                "bound": bound,
                "grid_agents": f"{int(group['agents'].min())}..{int(group['agents'].max())}",
                "slo": "; ".join(o.text for o in objectives),
            }
        )
    return pd.DataFrame(rows)


def latency_slo(slo: SloArg) -> Slo | None:
    """The first latency objective: the one the knee plot draws."""
    return next((o for o in slos_of(slo) if o.is_latency), None)


def metric_values(df: pd.DataFrame, objective: Slo) -> pd.Series:
    return pd.Series([objective.value(json.loads(t)) for t in df["summary_json"]], index=df.index, dtype=float)


def knee_figure(sweep_df: pd.DataFrame, slo: SloArg, capacity: pd.DataFrame | None = None) -> Figure:
    """The latency the SLO names against fleet size (log x), a line per configuration, the SLO's limit.

    Points are the mean over replications with their t interval; a marker on the limit line
    shows each configuration's capacity when `capacity` (from `capacity_table`) is given.
    """
    objective = latency_slo(slo) or parse_slo("p99 of poll < 200 ms")
    cols = config_columns(sweep_df)
    df = sweep_df.assign(metric=metric_values(sweep_df, objective))
    fig, (ax,) = new_figure(f"Knee: {objective.stat} of {objective.describe_endpoint()} against fleet size", cols=1)
    for config, group in df.groupby(cols, sort=True, dropna=False):
        key = config if isinstance(config, tuple) else (config,)
        label = ", ".join(f"{c.rsplit('.', 1)[-1]}={_fmt(v)}" for c, v in zip(cols, key))
        per = group.groupby("agents")["metric"].agg(["mean", "std", "count"]).reset_index()
        tq = np.array([sps.t.ppf(0.975, n - 1) if n > 1 else 0.0 for n in per["count"]])
        err = np.nan_to_num(tq * per["std"].to_numpy() / np.sqrt(per["count"].to_numpy()))
        line = ax.errorbar(per["agents"], per["mean"], yerr=err, marker="o", capsize=3, label=label)
        if capacity is not None:
            match = capacity
            for c, v in zip(cols, key):
                match = match[match[c] == v]
            if len(match) and math.isfinite(float(match["max_agents"].iloc[0])):
                ax.plot(match["max_agents"].iloc[0], objective.limit, marker="v", ms=10, color=line[0].get_color())
    ax.axhline(objective.limit, color="tab:red", linestyle="--", label=f"SLO: {objective.text}")
    log_x(ax)
    ax.set_yscale("log")
    ax.set(xlabel="agents (fleet size)", ylabel=f"{objective.stat} latency (ms)")
    ax.legend(fontsize=8)
    return fig


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
