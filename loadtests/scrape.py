"""Scrape the target's Prometheus `/metrics` once a second during a load test: `server.parquet`.

The load test sees the server from outside (latency, status); the server's own metrics say
what happened inside (requests as it counted them, its handler time, requests in flight, store
time, commands queued). `smsload load` runs a `Scraper` thread beside Locust against the
target; a target without `/metrics` (404, or not the Prometheus text format) is noted once and
left alone. At the end the samples go to `server.parquet` in the run directory, one row per
sample per scrape (the columns are `SERVER_COLUMNS`, in README.md "Run directories"):

- `t_s`: when the scrape was answered, in seconds from the run's t0 (as `t_start_s` of requests)
- `metric`: the sample's name (`smsload_server_requests_total`, `..._bucket`, ...)
- `endpoint`, `status`, `kind`, `le`: the labels of the reference server's metrics (null where a
  sample has none); `labels`: all of the sample's labels as JSON, for any other server's metrics
- `value`: the sample's value (counters are cumulative since the server started)

The scrape sends the run's token (a staging server may guard /metrics) and never writes it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

SCRAPE_EVERY_S = 1.0
SERVER_FILE = "server.parquet"
_LABELS = ("endpoint", "status", "kind", "le")
SERVER_SCHEMA = pa.schema(
    [
        ("t_s", pa.float64()),
        ("metric", pa.string()),
        *((name, pa.string()) for name in _LABELS),
        ("labels", pa.string()),
        ("value", pa.float64()),
    ]
)
SERVER_COLUMNS = tuple(SERVER_SCHEMA.names)


def parse_metrics(text: str, t_epoch: float) -> list[tuple[Any, ...]]:
    """The samples of one exposition, as rows with the scrape's epoch time (made relative later)."""
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            rows.append(
                (
                    t_epoch,
                    sample.name,
                    *(labels.get(name) for name in _LABELS),
                    json.dumps(labels, sort_keys=True),
                    float(sample.value),
                )
            )
    return rows


class Scraper:
    """A daemon thread scraping `{target}/metrics` every second until `stop()`; then `write(out)`."""

    def __init__(self, target: str, token: str = "") -> None:
        self.url = f"{target}/metrics"
        self._headers = {"X-Auth-Token": token} if token else {}
        self.rows: list[tuple[Any, ...]] = []
        self.scrapes = 0
        self.failures = 0
        self.absent: str | None = None  # why the target has no metrics to scrape, once known
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smsload-scrape", daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def _run(self) -> None:
        with httpx.Client(headers=self._headers, timeout=2.0, follow_redirects=False) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                self._scrape(client)
                if self.absent is not None:
                    return
                next_at += SCRAPE_EVERY_S
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _scrape(self, client: httpx.Client) -> None:
        try:
            response = client.get(self.url)
        except httpx.HTTPError:
            self.failures += 1  # a busy or restarting server: the next second tries again
            return
        if response.status_code == 404 or not response.headers.get("content-type", "").startswith("text/plain"):
            self.absent = f"{self.url} answered {response.status_code} {response.headers.get('content-type', '')}"
            return
        if response.status_code != 200:
            self.failures += 1
            return
        try:
            rows = parse_metrics(response.text, time.time())
        except ValueError:
            self.absent = f"{self.url} is not in the Prometheus text format"
            return
        self.rows += rows
        self.scrapes += 1

    def stop(self) -> None:
        """Stop scraping, after one last scrape: the counters then hold the whole run."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self.absent is None and not self._thread.is_alive():
            with httpx.Client(headers=self._headers, timeout=2.0, follow_redirects=False) as client:
                self._scrape(client)

    def write(self, out: Path, t0: float) -> Path | None:
        """`server.parquet` with times relative to the run's `t0`; None when nothing was scraped."""
        if not self.rows:
            return None
        columns = list(zip(*self.rows))
        arrays = [pa.array([t - t0 for t in columns[0]], pa.float64())]
        arrays += [pa.array(list(col), field.type) for col, field in zip(columns[1:], list(SERVER_SCHEMA)[1:])]
        path = Path(out) / SERVER_FILE
        pq.write_table(pa.Table.from_arrays(arrays, schema=SERVER_SCHEMA), path)
        return path
