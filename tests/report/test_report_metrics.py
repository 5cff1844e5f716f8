"""Request metrics against known distributions and hand-built tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sim.records import QUANTILES
from sim.report import metrics as M
from sim.report.hist import (
    DEFAULT_BINS,
    bootstrap,
    group_histograms,
    hist_quantiles,
    interval,
    min_samples,
    quantile_frame,
)

MEAN_MS = 10.0
PROBS = np.array([0.5, 0.95, 0.99])
TRUE = -MEAN_MS * np.log(1 - PROBS)  # quantiles of the exponential distribution


def requests_table(
    latency: np.ndarray,
    t: np.ndarray | None = None,
    endpoint: str = "/v1/sms/sources/{source_id}/command",
    method: str = "GET",
    ok: np.ndarray | None = None,
) -> pd.DataFrame:
    n = len(latency)
    t = np.linspace(0, 10, n, endpoint=False) if t is None else t
    ok = np.ones(n, bool) if ok is None else ok
    return pd.DataFrame(
        {
            "method": [method] * n,
            "endpoint": [endpoint] * n,
            "t_sched_s": t,
            "t_start_s": t,
            "latency_ms": latency,
            "ok": ok,
            "status": np.where(ok, 200, 503).astype(np.int32),
            "error": np.where(ok, "", "SMS.0503"),
            "queue_wait_ms": np.nan,
            "server_ms": np.nan,
        }
    )


def exp_hist(n: int, seed: int) -> tuple[np.ndarray, object]:
    x = np.random.default_rng(seed).exponential(MEAN_MS, n)
    return x, group_histograms(x, np.zeros(n, np.int64), ["poll"])


def test_bins_hold_values_within_their_resolution() -> None:
    x = np.geomspace(0.002, 5e6, 10_000)
    k = DEFAULT_BINS.index(x)
    rel = np.abs(DEFAULT_BINS.value(k) / x - 1)
    assert rel.max() <= math.sqrt(1 + DEFAULT_BINS.rel_width) - 1 + 1e-12
    assert list(DEFAULT_BINS.index(np.array([0.0, np.nan]))) == [0, -1]
    assert DEFAULT_BINS.value(np.array([0]))[0] == 0.0


def test_histogram_quantiles_match_the_sample_within_the_bin_resolution() -> None:
    x, h = exp_hist(50_000, seed=1)
    exact = np.quantile(x, PROBS, method="inverted_cdf")  # the order statistic, as the histogram reads it
    assert np.allclose(hist_quantiles(h, 0, PROBS), exact, rtol=0.006)


@pytest.mark.parametrize("n", [1, 2, 7, 50, 400, 3_000])
def test_quantile_frame_points_are_exact_and_inside_their_intervals(n: int) -> None:
    rng = np.random.default_rng(n)
    # Two groups of different shapes, ties and zeros included (a queue wait is often exactly 0).
    a = np.round(rng.lognormal(1.0, 1.2, n), 2)
    b = np.where(rng.random(n) < 0.6, 0.0, rng.exponential(3.0, n))
    values, codes = np.concatenate([a, b, [np.nan]]), np.concatenate([np.zeros(n), np.ones(n), [0]]).astype(np.int64)
    table = quantile_frame(values, codes, ["a", "b"], total="all", seed=4)
    probs = np.array(list(QUANTILES.values()))
    for label, sample in (("a", a), ("b", b), ("all", np.concatenate([a, b]))):
        row = table.loc[label]
        assert row["count"] == len(sample)
        assert list(row[list(QUANTILES)]) == list(np.quantile(sample, probs, method="inverted_cdf")), label
        for name in QUANTILES:
            assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"], (label, name)


def test_the_interval_covers_the_true_quantile_about_95_percent_of_the_time() -> None:
    covered = np.zeros(len(PROBS))
    trials = 200
    for seed in range(trials):
        _, h = exp_hist(2_000, seed)
        lo, hi = interval(bootstrap(h, 0, PROBS, n_boot=400, seed=seed))
        covered += (lo <= TRUE) & (TRUE <= hi)
    share = covered / trials
    # 95 % nominal; a percentile bootstrap of p99 from 2,000 samples runs a little narrow.
    assert (share >= 0.88).all() and (share <= 0.995).all(), share


def test_the_interval_narrows_with_more_data() -> None:
    widths = []
    for n in (1_000, 10_000, 100_000):
        _, h = exp_hist(n, seed=7)
        lo, hi = interval(bootstrap(h, 0, PROBS, seed=3))
        widths.append(hi - lo)
    w = np.array(widths)
    assert (w[1] < w[0]).all() and (w[2] < w[1]).all()
    ratio = w[0] / w[2]  # 100 times the data: about 10 times narrower
    assert ((ratio > 4) & (ratio < 30)).all(), ratio


def test_bootstrap_is_reproducible_with_the_seed() -> None:
    x, _ = exp_hist(5_000, seed=2)
    codes = np.zeros(len(x), np.int64)
    a = quantile_frame(x, codes, ["poll"], seed=11)
    assert a.equals(quantile_frame(x, codes, ["poll"], seed=11))
    assert not a.equals(quantile_frame(x, codes, ["poll"], seed=12))


def test_min_samples_follows_the_order_statistics() -> None:
    assert [min_samples(q) for q in (0.5, 0.95, 0.99)] == [6, 72, 368] and math.isinf(min_samples(1.0))


def test_endpoint_table_counts_rates_and_intervals() -> None:
    rng = np.random.default_rng(5)
    poll = requests_table(rng.exponential(MEAN_MS, 4_000), ok=np.arange(4_000) % 50 != 0)
    register = requests_table(rng.exponential(100.0, 1_000), endpoint="/v3/sources", method="POST")
    table = M.endpoint_table(pd.concat([poll, register], ignore_index=True), duration_s=10.0, seed=1)
    assert list(table.index) == ["GET /v1/sms/sources/{source_id}/command", "POST /v3/sources", M.ALL]
    row = table.loc["GET /v1/sms/sources/{source_id}/command"]
    assert (row["count"], row["errors"]) == (4_000, 80) and row["error_rate"] == pytest.approx(0.02)
    assert row["error_rate_lo"] < 0.02 < row["error_rate_hi"]
    assert row["throughput_per_s"] == 400.0 and row["throughput_lo"] < 400 < row["throughput_hi"]
    for name, true in zip(("p50", "p95", "p99"), TRUE):
        assert row[f"{name}_lo"] <= row[name] <= row[f"{name}_hi"]
        assert row[f"{name}_lo"] * 0.9 < true < row[f"{name}_hi"] * 1.1
    assert table.loc[M.ALL, "count"] == 5_000 and table.loc[M.ALL, "errors"] == 80
    assert table.loc["POST /v3/sources", "method"] == "POST" and table.loc[M.ALL, "template"] == M.ALL


def test_errors_by_status() -> None:
    r = requests_table(np.ones(100), ok=np.arange(100) >= 10)
    out = M.errors_by_status(r)
    assert out.to_dict("records") == [
        {
            "endpoint": "GET /v1/sms/sources/{source_id}/command",
            "status": 503,
            "error": "SMS.0503",
            "count": 10,
            "share": 0.1,
        }
    ]
    assert M.errors_by_status(requests_table(np.ones(5))).empty


def test_throughput_over_time_on_a_synthetic_table() -> None:
    # 3 requests in [0, 1), none in [1, 2), 5 in [2, 3), 1 in the last, partial bin [3, 3.5).
    t = np.array([0.1, 0.5, 0.9, 2.0, 2.2, 2.4, 2.6, 2.99, 3.4])
    r = requests_table(np.ones(len(t)), t=t, ok=np.arange(len(t)) != 3)
    out = M.throughput_over_time(r, duration_s=3.5, by_endpoint=False)
    assert list(out["t_s"]) == [0.0, 1.0, 2.0]  # the partial bin [3, 3.5) is not a bin
    assert list(out["requests"]) == [3, 0, 5] and list(out["errors"]) == [0, 0, 1]
    assert list(out["per_s"]) == [3.0, 0.0, 5.0]
    assert out["error_rate"].iloc[2] == 0.2 and math.isnan(out["error_rate"].iloc[1])  # no requests: no rate
    per_endpoint = M.throughput_over_time(r, duration_s=3.5)
    assert set(per_endpoint["endpoint"]) == {"GET /v1/sms/sources/{source_id}/command"}
    # A request at exactly the end of a run of whole bins belongs to the last bin.
    assert list(M.throughput_over_time(r, duration_s=3.0, by_endpoint=False)["requests"]) == [3, 0, 5]
    # A run shorter than one bin keeps its one partial bin: nothing else would show it.
    short = M.throughput_over_time(requests_table(np.ones(2), t=np.array([0.1, 0.3])), 0.5, by_endpoint=False)
    assert list(short["requests"]) == [2] and list(short["per_s"]) == [4.0]


def test_the_last_partial_bin_shows_no_spike() -> None:
    # A 10.05 s run: 100 requests of 1 ms every second, then two of 50 ms in the last 50 ms (a run's
    # end: the last requests are the stragglers). A bin of those two would read p50 = 50 ms at t = 10 s.
    t = np.concatenate([np.repeat(np.arange(10) + 0.5, 100), [10.01, 10.02]])
    latency = np.concatenate([np.ones(1000), [50.0, 50.0]])
    out = M.percentiles_over_time(requests_table(latency, t=t), duration_s=10.05, by_endpoint=True)
    assert list(out["t_s"]) == [float(i) for i in range(10)]
    assert out["p50"].max() == 1.0 and out["count"].sum() == 1000


def test_percentiles_over_time_per_bin() -> None:
    t = np.repeat([0.5, 1.5], 100)
    latency = np.concatenate([np.arange(1, 101), np.arange(1, 101) * 10.0])
    out = M.percentiles_over_time(requests_table(latency, t=t), duration_s=3.0)
    assert list(out["count"]) == [100, 100, 0]
    # Exact order statistics: the 50th of 1..100 is 50, the 95th of 10..1000 is 950.
    assert list(out["p50"].iloc[:2]) == [50.0, 500.0] and list(out["p95"].iloc[:2]) == [95.0, 950.0]
    assert out["max"].iloc[1] == 1000.0 and math.isnan(out["p50"].iloc[2])


def test_generator_saturation_from_lag_and_cpu() -> None:
    t = np.linspace(0, 60, 6_000, endpoint=False)
    steady = requests_table(np.ones(len(t)), t=t)
    steady["t_start_s"] = steady["t_sched_s"] + 0.3  # a constant offset is not saturation
    assert M.generator_saturation(M.generator_lag(steady, 60.0)) == []
    falling_behind = steady.assign(t_start_s=steady["t_sched_s"] * 1.01)  # 0 -> 600 ms late
    assert "lag grew" in M.generator_saturation(M.generator_lag(falling_behind, 60.0))[0]
    busy = pd.DataFrame(
        {"t_s": np.arange(60.0), "process": "worker-1", "cpu_percent": np.where(np.arange(60) < 30, 50, 97)}
    )
    (reason,) = M.generator_saturation(M.generator_lag(steady, 60.0), busy)
    assert "worker-1" in reason and "50%" in reason
