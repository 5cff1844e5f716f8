"""The Universal Scalability Law fitted to load tests at several levels, with bootstrap intervals.

Gunther's USL models the throughput of N concurrent clients as

    X(N) = lambda N / (1 + sigma (N - 1) + kappa N (N - 1))

with `lambda` the throughput of one client, `sigma` contention (the serial fraction: Amdahl)
and `kappa` coherency (crosstalk: past its peak at N* = sqrt((1 - sigma) / kappa) more
clients lower the throughput). Here N is a run's fleet size (its manifest's `agents`) and X
its requests per second, counted per second of the run after the first 10 % (the fleet
arriving). The fit is scipy's `curve_fit` (bounded: lambda > 0, 0 <= sigma <= 1, kappa >= 0)
on the levels' mean throughputs; the 95 % intervals of the parameters are a bootstrap: each
level's per-second throughputs resampled with replacement, the means refitted, the 2.5 and
97.5 percentiles taken.

Limits, stated where the fit is shown: the USL describes throughput only (no latency, no
SLO); it needs levels where the throughput already bends (a fleet far below saturation gives
a line, sigma and kappa near 0 with wide intervals, and an extrapolation that is a guess);
with few levels (three is the least for three parameters) the intervals are wide; and a
polling fleet's think time makes lambda about 1 / poll interval, so levels must share it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from scipy.optimize import curve_fit

from sim.report.figures import log_x, new_figure

WARMUP_FRACTION = 0.1
N_BOOT = 500


class UslError(ValueError):
    """Levels the USL cannot be fitted to (too few, or no throughput); one line for the user."""


def usl(n: np.ndarray | float, lam: float, sigma: float, kappa: float) -> np.ndarray:
    """X(N) of the Universal Scalability Law."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """The fitted parameters, their 95 % bootstrap intervals, and the levels they came from."""

    lam: float
    sigma: float
    kappa: float
    intervals: dict[str, tuple[float, float]]
    levels: pd.DataFrame = field(repr=False)  # agents, throughput_per_s (mean), usl_per_s, seconds (samples)

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        return usl(n, self.lam, self.sigma, self.kappa)

    @property
    def peak_agents(self) -> float:
        """N* where the throughput peaks (inf without coherency cost)."""
        return math.sqrt((1 - self.sigma) / self.kappa) if self.kappa > 0 else math.inf

    def table(self) -> pd.DataFrame:
        """A row per parameter: estimate and 95 % interval."""
        rows = [(name, getattr(self, name), *self.intervals[name]) for name in ("lam", "sigma", "kappa")]
        return pd.DataFrame(rows, columns=["parameter", "estimate", "lo", "hi"])


def _fit_means(n: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    lam0 = float(x[np.argmin(n)] / n.min())
    params, _ = curve_fit(
        usl, n, x, p0=[lam0, 0.01, 1e-6], bounds=([1e-12, 0.0, 0.0], [np.inf, 1.0, np.inf]), maxfev=20000
    )
    return float(params[0]), float(params[1]), float(params[2])


def fit_usl(levels: Mapping[float, Sequence[float]], n_boot: int = N_BOOT, seed: int = 0) -> UslFit:
    """Fit the USL to per-second throughputs by level (fleet size -> samples), with bootstrap intervals."""
    clean = {float(n): np.asarray(v, dtype=float) for n, v in levels.items() if len(v)}
    if len(clean) < 3:
        raise UslError(f"the USL has three parameters: it needs runs at 3 or more fleet sizes, got {len(clean)}")
    n = np.array(sorted(clean))
    means = np.array([clean[k].mean() for k in n])
    if not np.all(means > 0):
        raise UslError("a level has no throughput (no requests after its warm-up)")
    lam, sigma, kappa = _fit_means(n, means)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        resampled = np.array([rng.choice(clean[k], size=clean[k].size).mean() for k in n])
        try:
            boots.append(_fit_means(n, resampled))
        except RuntimeError:  # a resample curve_fit cannot fit is left out
            continue
    b = np.array(boots) if boots else np.full((1, 3), np.nan)
    intervals = {
        name: (float(np.percentile(b[:, i], 2.5)), float(np.percentile(b[:, i], 97.5)))
        for i, name in enumerate(("lam", "sigma", "kappa"))
    }
    table = pd.DataFrame(
        {
            "agents": n,
            "throughput_per_s": means,
            "usl_per_s": usl(n, lam, sigma, kappa),  # the fit at the level: how well the law describes it
            "seconds": [clean[k].size for k in n],
        }
    )
    return UslFit(lam, sigma, kappa, intervals, table)


def run_level(run_dir: Path) -> tuple[int, np.ndarray]:
    """(fleet size, requests per second for each whole second after the warm-up) of one run directory."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    agents = manifest.get("agents")
    duration = manifest.get("duration_s")
    if not agents or not duration:
        raise UslError(f"{run_dir}: the manifest has no agents or duration_s (an unfinished run?)")
    t = pq.read_table(run_dir / "requests.parquet", columns=["t_start_s"]).column("t_start_s").to_numpy()
    start, end = math.ceil(WARMUP_FRACTION * duration), math.floor(duration)
    if end <= start:
        raise UslError(f"{run_dir}: the run is too short ({duration} s) for whole seconds after its warm-up")
    counts = np.bincount(np.floor(t[(t >= start) & (t < end)]).astype(int) - start, minlength=end - start)
    return int(agents), counts.astype(float)


def usl_figure(fit: UslFit, sweep_throughput: pd.DataFrame | None = None) -> Figure:
    """Measured levels, the fitted USL extrapolated, and (if given) the simulation's throughput beside it.

    `sweep_throughput` has columns agents, throughput_per_s and `label` (one line per label).
    """
    fig, (ax,) = new_figure("Universal Scalability Law: measured levels, fit and extrapolation", cols=1)
    top = float(fit.levels["agents"].max()) * 10
    if sweep_throughput is not None and len(sweep_throughput):
        top = max(top, float(sweep_throughput["agents"].max()))
    grid = np.geomspace(max(1.0, float(fit.levels["agents"].min()) / 2), top, 200)
    ax.plot(grid, fit.predict(grid), label=f"USL fit (sigma={fit.sigma:.3g}, kappa={fit.kappa:.3g})")
    ax.plot(fit.levels["agents"], fit.levels["throughput_per_s"], "o", color="black", label="load tests (measured)")
    if sweep_throughput is not None:
        for label, group in sweep_throughput.groupby("label", sort=True):
            g = group.sort_values("agents")
            ax.plot(g["agents"], g["throughput_per_s"], "s--", alpha=0.7, label=f"simulation {label}")
    log_x(ax)
    ax.set(xlabel="agents (fleet size)", ylabel="requests per second")
    ax.legend(fontsize=8)
    return fig
