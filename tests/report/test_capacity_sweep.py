"""The capacity answer from sweep rows: crossings, intervals, configurations, the knee figure, and MVA."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from sim.report.capacity_mva import EXACT_UP_TO, mva_closed, mva_exact
from sim.report.capacity_sweep import capacity_table, crossing, knee_figure, log_t_interval

POLL = "GET /v1/sms/sources/{source_id}/command"


def test_crossing_interpolates_on_log_fleet_size() -> None:
    agents = np.array([1000, 100, 10_000])  # any order
    ratio = np.array([1.5, 0.5, 9.0])
    value, how = crossing(agents, ratio, ratio < 1)
    t = math.log(2) / (math.log(2) + math.log(1.5))  # where log ratio reaches 0, on log N
    assert how == "interpolated" and value == pytest.approx(100 * 10**t)
    value, _ = crossing(agents, np.array([1.0 / 0.1, 0.1, 1e3]), np.array([False, True, False]))
    assert value == pytest.approx(math.sqrt(100 * 1000))  # 0.1 -> 10: halfway on the log-log line
    value, _ = crossing(np.array([10, 100]), np.array([0.0, 3.0]), np.array([True, False]))
    assert value == pytest.approx(10 * 10 ** (1 / 3))  # a ratio of 0 has no log: linear in the ratio
    value, how = crossing(agents, np.array([0.5, 0.2, 0.9]), np.array([True, True, True]))
    assert (value, how) == (10_000, "above grid")
    value, how = crossing(agents, np.array([2.0, 1.5, 3.0]), np.array([False, False, False]))
    assert math.isnan(value) and how == "below grid"
    # a fleet passing again after a miss does not count: every smaller fleet must pass
    value, _ = crossing(np.array([10, 20, 40]), np.array([0.5, 1.5, 0.5]), np.array([True, False, True]))
    assert 10 < value < 20


def test_log_t_interval() -> None:
    centre, lo, hi = log_t_interval([100.0, 400.0])
    assert centre == pytest.approx(200.0) and lo < 200 < hi
    assert lo * hi == pytest.approx(200.0**2)  # symmetric on the log scale
    assert math.isnan(log_t_interval([5.0])[1])


def _rows(curves: dict[tuple[int, int], list[float]], agents: list[int]) -> pd.DataFrame:
    """Sweep rows whose poll p99 follows given curves, keyed (workers, replication)."""
    rows = []
    for (workers, rep), p99s in curves.items():
        for n, p99 in zip(agents, p99s):
            summary = {
                "requests": {"count": 100, "error_rate": 0.0, "latency_ms": {"p99": p99}},
                "endpoints": {POLL: {"count": 100, "error_rate": 0.0, "latency_ms": {"p99": p99, "mean": p99 / 3}}},
            }
            rows.append(
                {
                    "key": f"{n}-{workers}-{rep}",
                    "fleet.agents": n,
                    "server.workers": workers,
                    "agents": n,
                    "workers": workers,
                    "poll_interval_s": 30.0,
                    "replication": rep,
                    "p99_ms": p99,
                    "summary_json": json.dumps(summary),
                }
            )
    df = pd.DataFrame(rows)
    df.attrs["sweep"] = {"vary": [{"path": "fleet.agents"}, {"path": "server.workers"}]}
    return df


def test_capacity_table_per_configuration_with_an_interval() -> None:
    agents = [100, 1000, 10_000]
    df = _rows(
        {
            (1, 0): [10.0, 300.0, 900.0],  # crosses 200 ms between 100 and 1000
            (1, 1): [10.0, 150.0, 900.0],  # crosses between 1000 and 10,000
            (2, 0): [10.0, 20.0, 100.0],  # never crosses: at least 10,000
            (2, 1): [10.0, 20.0, 150.0],
        },
        agents,
    )
    table = capacity_table(df, "p99 of poll < 200 ms").set_index("server.workers")
    one, two = table.loc[1], table.loc[2]
    r0 = 100 * 10 ** (math.log(200 / 10) / math.log(300 / 10))  # log-log line through (100, 10), (1000, 300)
    r1 = 1000 * 10 ** (math.log(200 / 150) / math.log(900 / 150))
    assert one["max_agents"] == pytest.approx(math.sqrt(r0 * r1))
    assert one["max_agents_lo"] < r0 < r1 < one["max_agents_hi"] and one["bound"] == "interpolated"
    assert two["bound"] == "above grid" and two["max_agents"] == pytest.approx(10_000)
    assert "workers" not in table.columns  # server.workers says it already
    assert one["poll_interval_s"] == 30.0 and one["replications"] == 2
    # a second objective that fails everywhere: no fleet of the grid meets both
    both = capacity_table(df, ["p99 of poll < 200 ms", "p99 < 5 ms"])
    assert set(both["bound"]) == {"below grid"} and both["max_agents"].isna().all()


def test_knee_figure_draws_a_line_per_configuration_and_the_limit() -> None:
    df = _rows({(1, 0): [10.0, 300.0, 900.0], (2, 0): [10.0, 20.0, 100.0]}, [100, 1000, 10_000])
    slo = "p99 of poll < 200 ms"
    fig = knee_figure(df, slo, capacity_table(df, slo))
    [ax] = fig.axes
    assert ax.get_xscale() == "log" and "p99" in fig.get_suptitle()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(labels) == {f"SLO: {slo}", "workers=1", "workers=2"}


def _exact_single_server(n: int, think_s: float, service_s: float) -> tuple[float, float]:
    q = x = r = 0.0
    for k in range(1, n + 1):
        r = service_s * (1 + q)
        x = k / (r + think_s)
        q = x * r
    return x, r


@pytest.mark.parametrize("n", [1, 5, 12, 50])
def test_exact_mva_matches_the_single_server_recursion(n: int) -> None:
    assert mva_exact(n, 1.0, 0.1, 1) == pytest.approx(_exact_single_server(n, 1.0, 0.1), rel=1e-9)


def test_multi_server_mva_at_its_limits_and_the_large_fleet_approximation() -> None:
    x, r = mva_exact(1, 30.0, 0.5, 4)
    assert (x, r) == pytest.approx((1 / 30.5, 0.5))  # one agent never waits
    x, r = mva_exact(500, 0.0, 0.01, 4)
    assert x == pytest.approx(400.0, rel=1e-6)  # no think time: the four workers saturate
    for workers, service_s in [(1, 0.00045), (4, 0.0018)]:  # utilisation about 0.9 at the switch
        exact = mva_exact(EXACT_UP_TO, 1.0, service_s, workers)
        approx = mva_closed(EXACT_UP_TO + 1, 1.0, service_s, workers)
        assert approx[0] == pytest.approx(exact[0], rel=0.01)
        assert approx[1] == pytest.approx(exact[1], rel=0.15)
    x, r = mva_closed(1_000_000, 30.0, 0.0005, 8)  # 33,333 polls/s offered to a server of 16,000/s
    assert x == pytest.approx(16_000, rel=1e-3) and r > 30
    with pytest.raises(ValueError):
        mva_closed(0, 1.0, 0.1, 1)
