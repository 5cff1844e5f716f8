"""`server.parquet` read back: rates from cumulative counters, a restarted server, the figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from sim.report.server_view import client_series, server_figure, server_series


def _samples(counts: list[tuple[float, str, str, float]]) -> pd.DataFrame:
    rows = []
    for t, endpoint, status, value in counts:
        labels = {"endpoint": endpoint, "status": status}
        rows.append((t, "smsload_server_requests_total", endpoint, status, None, None, json.dumps(labels), value))
    for t in sorted({c[0] for c in counts}):
        rows.append((t, "smsload_server_in_flight", None, None, None, None, "{}", 1.0))
        rows.append((t, "smsload_server_pending_commands", None, None, None, None, "{}", 3.0))
    cols = ["t_s", "metric", "endpoint", "status", "kind", "le", "labels", "value"]
    return pd.DataFrame(rows, columns=cols)


def test_rates_come_from_counter_differences_and_a_restart_is_no_negative_rate() -> None:
    samples = _samples(
        [
            (0.0, "poll", "200", 100.0),
            (0.0, "poll", "401", 5.0),
            (1.0, "poll", "200", 150.0),
            (1.0, "poll", "401", 7.0),
            (3.0, "poll", "200", 250.0),
            (3.0, "poll", "401", 7.0),
            (4.0, "poll", "200", 10.0),  # the server restarted: its counters began again
            (4.0, "poll", "401", 0.0),
        ]
    )
    series = server_series(samples).set_index("t_s")
    assert series.loc[1.0, "req_per_s"] == 52.0 and series.loc[1.0, "error_per_s"] == 2.0
    assert series.loc[3.0, "req_per_s"] == 50.0 and series.loc[3.0, "error_per_s"] == 0.0
    assert np.isnan(series.loc[4.0, "req_per_s"])
    assert (series["pending"] == 3.0).all() and (series["in_flight"] == 1.0).all()
    assert series["handler_ms"].isna().all()  # no histogram scraped: unknown, not zero


def test_the_figure_has_the_three_panels() -> None:
    series = server_series(_samples([(0.0, "poll", "200", 0.0), (1.0, "poll", "200", 9.0)]))
    requests = pd.DataFrame({"t_start_s": [0.1, 0.2, 0.5], "latency_ms": [1.0, 2.0, 3.0]})
    client = client_series(requests)
    assert client["req_per_s"].tolist() == [3.0] and client["latency_ms"].tolist() == [2.0]
    fig = server_figure(series, client)
    assert len(fig.axes) == 3 and "server's view" in fig.get_suptitle()
