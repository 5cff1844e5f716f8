"""The reference server seen from inside: Prometheus metrics at `/metrics` (prometheus-client).

What a load test cannot see from the client: requests by endpoint and status as the server
counted them, the handler's own time, requests in flight, time spent in store transactions,
and commands queued but not yet acknowledged. `smsload load` scrapes these every second into
`server.parquet` (`loadtests.scrape`); any Prometheus can scrape them too.

    smsload_server_requests_total{endpoint,status}       counter
    smsload_server_request_seconds{endpoint}              histogram: first byte of the request to
                                                          the response's start, in the app
    smsload_server_in_flight                              gauge: requests being handled
    smsload_server_store_seconds{kind="read"|"write"}     histogram: one store transaction
    smsload_server_pending_commands                       gauge: queued, not yet acknowledged

`endpoint` is the API core's endpoint name (`sim.model.intents.ENDPOINTS`: poll, register, ...),
`healthz`, `openapi`, `metrics`, or `unmatched` for a path no route knows: bounded, never a raw path.

Several workers: `smsload serve --workers N` gives them a shared `PROMETHEUS_MULTIPROC_DIR`,
and a scrape, answered by any one worker, sums them (prometheus-client's multiprocess mode;
in flight is summed over live workers). prometheus-client is imported here only, when an app
is built: its multiprocess mode is chosen at import, after `smsload serve` has set the directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from time import perf_counter
from typing import Any

from sim.server.middleware import ASGIApp, Message, Scope

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
# Handler times of this server run from ~50 µs (a poll) to seconds (a slow store).
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """The server's metrics and their exposition; `pending()` counts unacknowledged commands."""

    def __init__(self, pending: Callable[[], int]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self._multiproc = bool(os.environ.get(MULTIPROC_ENV))
        own = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "smsload_server_requests",
            "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=own,
        )
        self.seconds = Histogram(
            "smsload_server_request_seconds",
            "Time in the app per request",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=own,
        )
        self.in_flight = Gauge(
            "smsload_server_in_flight", "Requests being handled", multiprocess_mode="livesum", registry=own
        )
        self.store_seconds = Histogram(
            "smsload_server_store_seconds", "Time per store transaction", ["kind"], buckets=_BUCKETS, registry=own
        )

        class _Pending:
            """Read at scrape time from the store every worker shares: one true total."""

            def collect(self) -> Any:
                family = GaugeMetricFamily("smsload_server_pending_commands", "Commands queued, not yet acknowledged")
                family.add_metric([], float(pending()))
                yield family

            def describe(self) -> list[Any]:
                return []

        if self._multiproc:
            from prometheus_client import multiprocess

            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposed)
        else:
            self._exposed = own
        self._exposed.register(_Pending())
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._children.get((endpoint, status))
        if children is None:  # `labels()` costs a lock and a dict per call: done once per pair
            children = (self.requests.labels(endpoint, str(status)), self.seconds.labels(endpoint))
            self._children[(endpoint, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self._exposed)


def endpoint_of(scope: Scope) -> str:
    """The endpoint's name once the app has handled the request (set by the poll fast path, or
    Starlette's route: our endpoints are named after the core's endpoints)."""
    name = scope.get("sms.endpoint")
    if name:
        return str(name)
    endpoint = scope.get("endpoint")
    return getattr(endpoint, "__name__", None) or "unmatched"


class MetricsLayer:
    """The outermost ASGI layer: counts and times every HTTP request, and answers `GET /metrics`."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        if scope["path"] == "/metrics" and scope["method"] == "GET":
            t0 = perf_counter()
            body = metrics.exposition()
            headers = [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body))]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            metrics.observe("metrics", 200, perf_counter() - t0)
            return
        t0 = perf_counter()
        status = 500
        elapsed: float | None = None

        async def counted_send(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status, elapsed = message["status"], perf_counter() - t0
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counted_send)
        finally:
            metrics.in_flight.dec()
            metrics.observe(endpoint_of(scope), status, perf_counter() - t0 if elapsed is None else elapsed)


class TimedStore:
    """A store whose `read()`/`write()` transactions are timed into `smsload_server_store_seconds`."""

    def __init__(self, store: Any, metrics: ServerMetrics) -> None:
        self._store = store
        self._read = metrics.store_seconds.labels("read")
        self._write = metrics.store_seconds.labels("write")

    def read(self) -> _TimedUnit:
        return _TimedUnit(self._store.read(), self._read)

    def write(self) -> _TimedUnit:
        return _TimedUnit(self._store.write(), self._write)

    def __getattr__(self, name: str) -> Any:  # commands(), events(), close(), ...: the store's own
        return getattr(self._store, name)


class _TimedUnit:
    def __init__(self, unit: Any, histogram: Any) -> None:
        self._unit, self._histogram = unit, histogram
        self._t0 = 0.0

    def __enter__(self) -> Any:
        self._t0 = perf_counter()
        return self._unit.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._unit.__exit__(*exc)
        finally:
            self._histogram.observe(perf_counter() - self._t0)
