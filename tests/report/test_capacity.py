"""Erlang C and the M/M/c response-time quantiles against closed forms and a seeded Monte Carlo."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import pytest

from sim.report.capacity import (
    PollQueue,
    erlang_c,
    largest_meeting,
    mmc_response_quantile_ms,
    mmc_tail,
    registration_s,
    sweep_figure,
    sweep_scenario,
)
from sim.scenario import load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"


def _erlang_c_textbook(c: int, a: float) -> float:
    top = a**c / math.factorial(c) / (1 - a / c)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.0), (4, 3.2), (8, 7.9), (30, 20.0)])
def test_erlang_c_matches_the_textbook_formula(c: int, a: float) -> None:
    assert erlang_c(c, a) == pytest.approx(_erlang_c_textbook(c, a), rel=1e-12)


def test_erlang_c_is_stable_for_large_pools_and_saturates() -> None:
    assert 0.0 < erlang_c(2000, 1900.0) < 1.0  # factorials would overflow here
    assert erlang_c(4, 4.0) == 1.0 and erlang_c(4, 0.0) == 0.0


def test_mm1_response_time_is_exponential_with_rate_mu_minus_lambda() -> None:
    # M/M/1: the response time is exponential with rate mu - lambda; its q-quantile is -ln(1-q)/(mu-lambda).
    lam_per_s, service_ms = 600.0, 1.0
    rate_per_ms = 1 / service_ms - lam_per_s / 1000
    for q in (0.5, 0.95, 0.99):
        assert mmc_response_quantile_ms(q, lam_per_s, service_ms, 1) == pytest.approx(
            -math.log(1 - q) / rate_per_ms, rel=1e-6
        )
    assert mmc_response_quantile_ms(0.99, 1000.0, service_ms, 1) == math.inf


def test_mmc_quantiles_match_a_seeded_simulation_of_the_queue() -> None:
    # Lindley-style FIFO M/M/c with c = 3 at utilisation 0.8: the p95 from 200,000 customers.
    rng, c, lam, service_ms = random.Random(7), 3, 2.4, 1.0  # lambda per ms
    free = [0.0] * c
    t, times = 0.0, []
    for _ in range(200_000):
        t += rng.expovariate(lam)
        i = min(range(c), key=free.__getitem__)
        start = max(t, free[i])
        free[i] = start + rng.expovariate(1 / service_ms)
        times.append(free[i] - t)
    times.sort()
    measured = times[int(0.95 * len(times))]
    assert mmc_response_quantile_ms(0.95, lam * 1000, service_ms, c) == pytest.approx(measured, rel=0.03)
    assert mmc_tail(0.0, lam * 1000, service_ms, c) == pytest.approx(1.0)


def test_poll_queue_of_the_quickstart_and_its_largest_fleet() -> None:
    queue = PollQueue.from_scenario(load_scenario(QUICKSTART))
    assert (queue.workers, queue.service_ms, queue.rtt_ms, queue.poll_interval_s) == (4, 0.5, 1.0, 5.0)
    assert queue.saturation_fleet == pytest.approx(40_000)
    target = 2 * queue.latency_ms(1, 0.99)
    n = queue.max_fleet(target)
    assert 0 < n < queue.saturation_fleet
    assert queue.latency_ms(n, 0.99) <= target < queue.latency_ms(n + 1, 0.99)
    assert queue.max_fleet(queue.rtt_ms) == 0  # below the round trip nothing qualifies


def test_largest_meeting_stops_at_the_first_miss() -> None:
    sweep = pd.DataFrame({"agents": [100, 400, 200, 800], "p99": [5.0, 12.0, 6.0, 9.0]})
    assert largest_meeting(sweep, 10.0) == 200  # 800 meets it again, but 400 did not
    assert largest_meeting(sweep, 1.0) is None


def test_sweep_scenarios_ramp_the_fleet_in_and_the_figure_draws() -> None:
    base = load_scenario(QUICKSTART)  # register: the default 2 ms, behind the write lock
    assert registration_s(base, 1000) == pytest.approx(2.0)
    swept = sweep_scenario(base, 500, ramp_s=10.0, duration_s=40.0)
    assert (swept.fleet.agents, swept.duration_s, swept.fleet.arrival.kind) == (500, 40.0, "ramp")
    assert swept.server == base.server and swept.agent == base.agent
    sweep = pd.DataFrame(
        {
            "agents": [100, 200],
            "throughput_per_s": [20.0, 40.0],
            "throughput_lo": [19.0, 38.0],
            "throughput_hi": [21.0, 42.0],
            "p99": [3.0, 3.5],
            "p99_lo": [2.9, 3.3],
            "p99_hi": [3.2, 3.9],
        }
    )
    fig = sweep_figure(sweep, PollQueue.from_scenario(base), target_ms=5.0)
    assert len(fig.axes) == 2 and "Erlang C" in fig.get_suptitle()
