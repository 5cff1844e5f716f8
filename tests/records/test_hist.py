"""Latency histograms in a run directory: dense counts -> table -> disk -> load, and summary.json read off them.

A histogram run must report what the row run it came from reports: the same counts and error
rates exactly, and every latency quantile within the bins' stated relative error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sim.des.run import run_des
from sim.records import (
    COMMAND_SCHEMA,
    HIST_FILE,
    HIST_SCHEMA,
    QUANTILES,
    TASK_SCHEMA,
    HistGroup,
    LogBins,
    RunDir,
    finish_run,
    hist_table,
    histograms_from_requests,
    load_run,
    quantiles,
)
from sim.records.hist import DEFAULT_BINS, bins_from_metadata
from sim.records.hist_summary import hist_stats
from sim.scenario import Scenario, load_scenario

QUICKSTART = Path(__file__).parents[2] / "sim" / "scenarios" / "quickstart.yaml"
POLL = "GET /v1/sms/sources/{source_id}/command"
REGISTER = "POST /v3/sources"
GROUPS = [HistGroup("poll", 200), HistGroup("poll", 0, "timeout"), HistGroup("register", 409, "SMS.9806")]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(QUICKSTART).with_overrides(agents=60, duration_s=45)


def _dense(rng: np.random.Generator, groups: int, times: int, bins: LogBins = DEFAULT_BINS) -> np.ndarray:
    """Counts as an engine accumulates them: a few hundred occupied buckets around 1..100 ms."""
    counts = np.zeros((groups, times, bins.n), np.int64)
    for g in range(groups):
        for t in range(times):
            k = bins.index(rng.lognormal(np.log(5.0 * (g + 1)), 0.8, size=200))
            np.add.at(counts[g, t], k, 1)
    return counts


def _fast_run(path: Path, scenario: Scenario, groups: list[HistGroup], counts: np.ndarray, bin_s: float) -> Path:
    """A run directory written as the fast engine writes it: histograms, no rows, empty task tables."""
    run = RunDir(path, scenario, "fast")
    run.write_histograms(hist_table(run.run_id, "fast", groups, bin_s, counts))
    finish_run(
        run,
        complete=True,
        duration_s=counts.shape[1] * bin_s,
        wall_s=0.5,
        tasks=TASK_SCHEMA.empty_table(),
        commands=COMMAND_SCHEMA.empty_table(),
        server_tables="not modelled by the fast engine",
        extra_summary={"server": {"busy_fraction": 0.42}},
    )
    return path


def test_a_quantile_read_off_the_bins_is_within_their_stated_relative_error() -> None:
    bins = LogBins()
    assert bins.rel_error == pytest.approx(math.sqrt(1.01) - 1) and 0.0049 < bins.rel_error < 0.005
    values = np.exp(np.random.default_rng(1).uniform(np.log(2e-3), np.log(5e7), 100_000))
    k = bins.index(values)
    assert (bins.lower(k) <= values * (1 + 1e-12)).all() and (values < bins.upper(k) * (1 + 1e-12)).all()
    assert np.abs(bins.value(k) / values - 1).max() <= bins.rel_error * (1 + 1e-9)
    assert bins.index(np.array([0.0, 5e-4, np.nan, 1e12])).tolist() == [0, 0, -1, bins.n - 1]


def test_dense_counts_round_trip_through_the_run_directory(tmp_path: Path, scenario: Scenario) -> None:
    counts = _dense(np.random.default_rng(7), len(GROUPS), 5)
    counts[1, 2:] = 0  # timeouts only in the first two seconds
    out = _fast_run(tmp_path / "fast", scenario, GROUPS, counts, bin_s=2.0)

    table = pq.read_table(out / HIST_FILE)
    assert table.schema.remove_metadata() == HIST_SCHEMA
    bins, bin_s = bins_from_metadata(table.schema.metadata)
    assert bins == DEFAULT_BINS and bin_s == 2.0
    meta = json.loads(table.schema.metadata[b"smsload.latency_hist"])
    assert meta["schema_version"] == 1 and meta["rel_error"] == pytest.approx(DEFAULT_BINS.rel_error)

    run = load_run(out)
    h = run.histograms
    assert run.latency_bins == DEFAULT_BINS and run.requests.empty
    assert len(h) == np.count_nonzero(counts) and (h["count"] > 0).all()  # sparse: nonzero cells only
    # Back to dense: the very counts the engine had.
    keys = {(g.endpoint_name, g.status): i for i, g in enumerate(GROUPS)}
    names = {("GET", "/v1/sms/sources/{source_id}/command"): "poll", ("POST", "/v3/sources"): "register"}
    dense = np.zeros_like(counts)
    for r in h.itertuples():
        dense[keys[(names[(r.method, r.endpoint)], r.status)], int(r.t_bin_s / 2.0), r.bucket] += r.count
    assert (dense == counts).all()
    assert set(h.loc[h["status"] == 0, "error"]) == {"timeout"} and h.loc[h["status"] == 200, "error"].isna().all()
    assert h["ok"].tolist() == (h["status"] == 200).tolist()
    assert (h["latency_lo_ms"] < h["latency_hi_ms"]).all() and (h["bin_s"] == 2.0).all()

    m = run.manifest
    assert m["executor"] == "fast" and m["clock"] == "virtual" and m["complete"] is True
    assert m["requests"] == counts.sum() and m["latency_histograms"]["bin_s"] == 2.0
    assert m["latency_histograms"]["rel_error"] == pytest.approx(DEFAULT_BINS.rel_error)
    s = run.summary
    assert s is not None and s["server"] == {"busy_fraction": 0.42}
    assert s["requests"]["count"] == counts.sum() and s["duration_s"] == 10.0
    assert s["endpoints"][POLL]["count"] == counts[:2].sum() and s["endpoints"][REGISTER]["count"] == counts[2].sum()
    assert s["endpoints"][POLL]["error_rate"] == round(counts[1].sum() / counts[:2].sum(), 6)
    assert s["endpoints"][REGISTER]["error_rate"] == 1.0
    assert all(v is None for v in s["generator_lag_ms"].values())


def test_summary_quantiles_are_the_order_statistics_of_the_bucket_midpoints(tmp_path: Path, scenario: Scenario) -> None:
    """The SAME positions as sim.records.quantiles: expand the histogram into its midpoints and compare."""
    counts = _dense(np.random.default_rng(3), 1, 3)
    counts[0, 0, 5] = 1  # one value (about 1 µs) far below the rest: the minimum is a bucket of its own
    run = load_run(_fast_run(tmp_path / "fast", scenario, [HistGroup("poll", 200)], counts, bin_s=1.0))
    assert run.summary is not None
    per_bucket = counts.sum(axis=(0, 1))
    midpoints = np.repeat(DEFAULT_BINS.value(np.arange(DEFAULT_BINS.n)), per_bucket)
    expected = quantiles(midpoints, np.array(list(QUANTILES.values())))
    got = run.summary["endpoints"][POLL]["latency_ms"]
    assert [got[name] for name in QUANTILES] == expected.tolist()
    assert got["mean"] == round(float(midpoints.mean()), 4)


def test_an_empty_group_is_absent_and_a_single_sample_is_every_quantile(tmp_path: Path, scenario: Scenario) -> None:
    bins = DEFAULT_BINS
    groups = [HistGroup("poll", 200), HistGroup("register", 201), HistGroup("poll_v3", 503, None)]
    counts = np.zeros((3, 4, bins.n), np.int64)
    counts[0, 3, bins.index(np.array([12.5]))[0]] = 1
    counts[2, 1, 0] = 2  # two answers faster than 1 µs: bucket 0, read as 0 ms
    run = load_run(_fast_run(tmp_path / "fast", scenario, groups, counts, bin_s=0.5))
    s = run.summary
    assert s is not None and set(s["endpoints"]) == {POLL, "GET /v3/sources/{source_id}/command"}
    one = s["endpoints"][POLL]["latency_ms"]
    assert len({one[name] for name in QUANTILES}) == 1 and abs(one["p50"] / 12.5 - 1) <= bins.rel_error
    assert s["endpoints"]["GET /v3/sources/{source_id}/command"]["latency_ms"]["max"] == 0.0
    assert run.histograms.loc[run.histograms["status"] == 503, "error"].isna().tolist() == [True]  # None: no error
    assert s["requests"]["count"] == 3 and run.manifest["requests"] == 3

    nothing = load_run(_fast_run(tmp_path / "none", scenario, groups, np.zeros_like(counts), bin_s=1.0))
    assert nothing.latency_bins is not None and nothing.histograms.empty and nothing.request_count == 0
    assert nothing.summary is not None and nothing.summary["endpoints"] == {}
    assert nothing.summary["requests"]["latency_ms"]["p50"] is None


@pytest.mark.parametrize(
    "groups, counts, message",
    [
        ([HistGroup("poll", 200)], np.zeros((2, 1, DEFAULT_BINS.n), np.int64), "shape"),
        ([HistGroup("poll", 200)], np.zeros((1, 1, 10), np.int64), "shape"),
        ([HistGroup("poll", 200)], np.zeros((1, 1, DEFAULT_BINS.n)), "integers"),
        ([HistGroup("poll", 200)], -np.ones((1, 1, DEFAULT_BINS.n), np.int64), "negative"),
    ],
)
def test_counts_an_engine_should_not_produce_are_refused(
    groups: list[HistGroup], counts: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        hist_table("r", "fast", groups, 1.0, counts)


def test_a_group_names_a_known_endpoint() -> None:
    with pytest.raises(ValueError, match="unknown endpoint 'pol'"):
        HistGroup("pol", 200)


def test_a_des_run_and_its_histograms_agree_exactly_on_counts_and_within_the_error_on_latency(
    tmp_path: Path, scenario: Scenario
) -> None:
    rows = load_run(run_des(scenario, tmp_path / "rows"))
    failing = rows.requests.astype({"error": object})  # categorical on load: a new value needs object
    bad = np.arange(len(failing)) % 17 == 0
    failing.loc[bad, ["status", "ok", "error"]] = [500, False, "SMS.2007"]
    table = histograms_from_requests(failing, 1.0, run_id="converted")
    assert table.column("run_id").unique().to_pylist() == ["converted"]
    assert table.column("executor").unique().to_pylist() == ["des"]
    assert pd.Series(table.column("count").to_numpy()).sum() == len(failing)

    run = RunDir(tmp_path / "hist", scenario, "des", run_id="converted")
    run.write_histograms(table)
    finish_run(
        run,
        complete=True,
        duration_s=float(rows.manifest["duration_s"]),
        wall_s=0.1,
        tasks=TASK_SCHEMA.empty_table(),
        commands=COMMAND_SCHEMA.empty_table(),
        server_tables="converted from request rows",
    )
    hist = load_run(tmp_path / "hist")
    assert hist.manifest["requests"] == rows.manifest["requests"] == len(failing)
    assert hist.summary is not None and rows.summary is not None
    err = DEFAULT_BINS.rel_error * (1 + 1e-9)
    with_rows = {**rows.summary["endpoints"], "ALL": rows.summary["requests"]}
    with_hist = {**hist.summary["endpoints"], "ALL": hist.summary["requests"]}
    assert set(with_rows) == set(with_hist) and len(with_rows) >= 6
    for endpoint, want in with_rows.items():
        got = with_hist[endpoint]
        assert got["count"] == want["count"] and got["throughput_per_s"] == want["throughput_per_s"]
        rate = float((~failing.loc[_in(failing, endpoint), "ok"]).mean())
        assert got["error_rate"] == round(rate, 6), endpoint
        for name in [*QUANTILES, "mean"]:
            exact, read = want["latency_ms"][name], got["latency_ms"][name]
            assert abs(read / exact - 1) <= err + (1e-4 / exact if name == "mean" else 0), (endpoint, name)
    # Errors counted by outcome, exactly.
    errs = hist.histograms[~hist.histograms["ok"]]
    assert errs["count"].sum() == bad.sum() and set(errs["error"]) == {"SMS.2007"}
    # The rows' quantiles by the same definition: stats of the midpoints of the rows' buckets.
    poll = failing[failing["endpoint"] == "/v1/sms/sources/{source_id}/command"]["latency_ms"].to_numpy()
    k = DEFAULT_BINS.index(poll)
    assert hist_stats(k, np.ones_like(k), DEFAULT_BINS) == with_hist[POLL]["latency_ms"]


def _in(frame: pd.DataFrame, endpoint: str) -> np.ndarray:
    if endpoint == "ALL":
        return np.ones(len(frame), bool)
    method, template = endpoint.split(" ", 1)
    return ((frame["method"] == method) & (frame["endpoint"] == template)).to_numpy()


def test_write_histograms_takes_only_a_histogram_table(tmp_path: Path, scenario: Scenario) -> None:
    run = RunDir(tmp_path / "r", scenario, "fast")
    with pytest.raises(ValueError, match="HIST_SCHEMA"):
        run.write_histograms(TASK_SCHEMA.empty_table())
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["latency_histograms"] is None
