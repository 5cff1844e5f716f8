"""The simulated server against queueing theory: Erlang C (open, many agents) and exact MVA (closed, few).

Each check runs the real agent model (polls only, no operator) through the simulation and
compares with the formula inside the simulation's own 95% confidence interval, estimated by
batch means over time (requests close in time are correlated; batches of tens of seconds are not).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import validate_scenario

POLL = "/v1/sms/sources/{source_id}/command"
BATCHES = 20


def _scenario(
    agents: int,
    interval_s: float,
    jitter_s: float,
    workers: int,
    service_ms: float,
    duration_s: float,
    ramp_s: float,
    seed: int,
) -> dict:
    return {
        "name": "queueing-check",
        "seed": seed,
        "duration_s": duration_s,
        "fleet": {"agents": agents, "arrival": {"kind": "ramp", "duration_s": ramp_s}},
        "agent": {"poll_interval_s": interval_s, "poll_jitter_s": jitter_s},
        "server": {
            "workers": workers,
            "write_lock": False,
            "rtt_ms": 0,
            "service_ms": {"default": {"dist": "exponential", "mean": service_ms}},
        },
    }


def _polls(tmp_path: Path, scenario: dict, warmup_s: float) -> pd.DataFrame:
    run = load_run(run_des(validate_scenario(scenario), tmp_path / "run"))
    r = run.requests
    return r[(r["endpoint"] == POLL) & (r["t_start_s"] >= warmup_s)].copy()


def _batch_ci(polls: pd.DataFrame, column: str, start: float, end: float) -> tuple[float, float, float]:
    """(mean, low, high): a 95% CI for the mean of `column` from BATCHES equal time batches."""
    edges = np.linspace(start, end, BATCHES + 1)
    batch = np.clip(np.searchsorted(edges, polls["t_start_s"].to_numpy(), side="right") - 1, 0, BATCHES - 1)
    means = polls.groupby(batch)[column].mean().to_numpy()
    half = stats.t.ppf(0.975, BATCHES - 1) * means.std(ddof=1) / math.sqrt(BATCHES)
    return float(means.mean()), float(means.mean() - half), float(means.mean() + half)


def erlang_c(c: int, offered: float) -> float:
    """P(wait > 0) in M/M/c with `offered` = lambda/mu Erlangs."""
    rho = offered / c
    top = offered**c / math.factorial(c) / (1 - rho)
    return top / (sum(offered**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.slow
@pytest.mark.parametrize(("rho", "seed"), [(0.5, 11), (0.8, 12)])
def test_mean_wait_and_wait_probability_match_erlang_c(tmp_path: Path, rho: float, seed: int) -> None:
    workers, service_s, interval_s = 4, 0.010, 10.0
    agents = round(rho * workers / service_s * interval_s)
    warmup, duration = 40.0, 400.0
    polls = _polls(
        tmp_path, _scenario(agents, interval_s, 5.0, workers, service_s * 1000, duration, 20.0, seed), warmup
    )
    lam = len(polls) / (duration - warmup)  # the offered load the fleet actually made
    offered = lam * service_s
    assert offered / workers == pytest.approx(rho, rel=0.02)
    p_wait = erlang_c(workers, offered)
    mean_wait_ms = 1000 * p_wait / (workers / service_s - lam)

    polls["waited"] = (polls["queue_wait_ms"] > 0).astype(float)
    w, w_lo, w_hi = _batch_ci(polls, "queue_wait_ms", warmup, duration)
    p, p_lo, p_hi = _batch_ci(polls, "waited", warmup, duration)
    assert w_lo <= mean_wait_ms <= w_hi, (
        f"Erlang C mean wait {mean_wait_ms:.3f} ms, simulated {w:.3f} [{w_lo:.3f}, {w_hi:.3f}]"
    )
    assert p_lo <= p_wait <= p_hi, f"Erlang C P(wait>0) {p_wait:.4f}, simulated {p:.4f} [{p_lo:.4f}, {p_hi:.4f}]"
    # Exponential service times: the simulated service column has the configured mean.
    assert polls["server_ms"].mean() == pytest.approx(service_s * 1000, rel=0.03)


def mva(n_agents: int, think_s: float, service_s: float) -> tuple[float, float]:
    """Exact mean value analysis of N agents (think time Z) and one FCFS server: (throughput /s, response s)."""
    queue = 0.0
    for n in range(1, n_agents + 1):
        response = service_s * (1 + queue)
        throughput = n / (think_s + response)
        queue = throughput * response
    return throughput, response


@pytest.mark.slow
def test_closed_fleet_near_saturation_matches_exact_mva(tmp_path: Path) -> None:
    # N* = (Z + S) / S = 51: 50 agents keep the single worker about 90% busy.
    agents, think_s, service_s = 50, 0.5, 0.010
    warmup, duration = 20.0, 600.0
    polls = _polls(tmp_path, _scenario(agents, think_s, 0.25, 1, service_s * 1000, duration, 1.0, 5), warmup)
    x_mva, r_mva = mva(agents, think_s, service_s)
    assert 0.85 < x_mva * service_s < 0.95  # near saturation, as intended

    edges = np.linspace(warmup, duration, BATCHES + 1)
    counts = np.histogram(polls["t_start_s"], bins=edges)[0] / np.diff(edges)
    half = stats.t.ppf(0.975, BATCHES - 1) * counts.std(ddof=1) / math.sqrt(BATCHES)
    assert counts.mean() - half <= x_mva <= counts.mean() + half, (
        f"MVA X {x_mva:.2f}/s, simulated {counts.mean():.2f} ± {half:.2f}"
    )
    r, r_lo, r_hi = _batch_ci(polls, "latency_ms", warmup, duration)
    assert r_lo <= r_mva * 1000 <= r_hi, f"MVA R {r_mva * 1000:.3f} ms, simulated {r:.3f} [{r_lo:.3f}, {r_hi:.3f}]"
