"""The reference SMS server: a Starlette app over the control plane.

`create_app(store_url, tokens)` builds the app; `app_from_env` is the factory the server's
worker processes call (`smsload serve` passes the store URL and tokens through the
environment, so every worker builds the same app). Each worker opens its own store
connection at startup and closes it at shutdown.

Request path, outermost first: `MetricsLayer` (counts and times every request, answers
`/metrics`: `sim.server.metrics`) -> `PollFastPath` (answers the agents' `GET .../command`
itself, auth and Server-Timing included) -> `ServerTiming` (Server-Timing header, last-resort
500) -> `TokenAuth` (401 unless the token is known or the AK/SK signature verifies; /healthz
and /metrics are open) -> Starlette's routing and exception handlers -> `endpoints.Api` (HTTP
only) -> `sim.model.api.ApiCore` (every rule).
Every error is `{"error_code": "SMS.xxxx", "error_msg": ...}`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

from sim.lifeline import die_with_parent
from sim.model.api import ApiCore
from sim.model.controlplane import ControlPlane
from sim.model.errors import NotFound, SmsError
from sim.model.intents import ENDPOINTS
from sim.model.liveness import Liveness
from sim.model.store import Store
from sim.server.admin import ENV_ADMIN_TOKEN
from sim.server.endpoints import Api
from sim.server.faults import ENV_FAULT_FILE, FaultableStore, FaultInjection
from sim.server.metrics import MetricsLayer, ServerMetrics, TimedStore
from sim.server.middleware import ASGIApp, Auth, PollFastPath, ServerTiming, TokenAuth, error_json
from sim.server.rig import DelayedStore, parse_latency
from sim.server.stores import open_store
from sim.signing import Credentials

# How `smsload serve` hands its configuration to the worker processes.
ENV_DB = "SMSLOAD_SERVE_DB"
ENV_TOKENS = "SMSLOAD_SERVE_TOKENS"  # JSON object: token -> project
ENV_STORE_LATENCY = "SMSLOAD_SERVE_STORE_LATENCY_MS"  # the knee rig's store latency (sim.server.rig)
ENV_LIVENESS = "SMSLOAD_SERVE_LIVENESS"  # JSON object: the fields of sim.model.liveness.Liveness
ENV_KEYS = "SMSLOAD_SERVE_AK_SK"  # JSON list of [ak, sk, project]: the keys whose signatures are accepted


class _LazyPlane:
    """The worker's control plane, opened at startup (or on first use when nothing ran the lifespan)."""

    def __init__(
        self,
        store_url: str,
        liveness: Liveness | None = None,
        store_latency_ms: str | None = None,
        faultable: bool = False,
    ) -> None:
        self.store_url, self.store_latency_ms = store_url, store_latency_ms
        self.liveness, self.faultable = liveness, faultable
        self.metrics: ServerMetrics | None = None  # set by create_app: store transactions are timed
        self._plane: ControlPlane | None = None
        self._store: Store | None = None  # the store itself, without the rig's delay or the timing

    def __call__(self) -> ControlPlane:
        if self._plane is None:
            store = self._store = open_store(self.store_url)
            if self.faultable:  # a slow-store fault sleeps inside the transaction (sim.server.faults)
                store = cast(Store, FaultableStore(store))
            if self.store_latency_ms:
                store = cast(Store, DelayedStore(store, parse_latency(self.store_latency_ms)))
            if self.metrics is not None:
                store = cast(Store, TimedStore(store, self.metrics))
            self._plane = ControlPlane(store, liveness=self.liveness)
        return self._plane

    def pending_commands(self) -> int:
        """For /metrics: read past the knee rig's delay and the timing, so that a scrape neither
        blocks the server for a simulated database round trip nor counts as the workload's."""
        self()
        assert self._store is not None
        return self._store.pending_commands()

    def close(self) -> None:
        if self._plane is not None:
            self._plane.store.close()
            self._plane = self._store = None


def _routes(api: Api) -> list[Route]:
    """The route table: the API's endpoints (`sim.model.intents.ENDPOINTS`, polls first, as the most
    frequent when PollFastPath does not answer) and the server's own; `sim/server/openapi.json`
    documents exactly these (path, method) pairs."""
    routes = [Route(path, api.endpoint(name), methods=[method]) for name, (method, path) in ENDPOINTS.items()]
    for route in routes:
        # Starlette answers HEAD on every GET route by running it; a HEAD of the poll would then
        # deliver the command without showing it. HEAD is not a poll: 405 (SMS.2003), as any other method.
        route.methods.discard("HEAD")  # type: ignore[union-attr]
    return [
        *routes,
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
    ]


def _error_response(exc: SmsError) -> Response:
    return Response(error_json(exc), exc.http_status, media_type="application/json")


async def _sms_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SmsError)
    return _error_response(exc)


def _methods_at(request: Request) -> list[str]:
    """The methods the routes at the request's path accept (HEAD, never a poll, aside)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods - {"HEAD"}
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors in SMS terms: no route is SMS.9802, a wrong method SMS.2003."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        # Starlette names the methods of the first route whose path matched; a path has a route per method.
        allowed = ", ".join(_methods_at(request))
        # The old error table gives SMS.2003 "invalid HTTP method" the HTTP status 401; HTTP's 405
        # with Allow is what clients (and the OpenAPI checks) understand, and 401 means "log in".
        response = _error_response(
            SmsError(f"invalid HTTP method: {where} (allowed: {allowed})", code="SMS.2003", http_status=405)
        )
        response.headers["Allow"] = allowed
        return response
    if exc.status_code == 404:
        return _error_response(NotFound(f"no such resource: {where}"))
    return _error_response(SmsError(f"{where}: {exc.detail}", code="SMS.9801", http_status=exc.status_code))


async def _internal_error(request: Request, exc: Exception) -> Response:
    """An unexpected exception: 500 SMS.2007 with no detail (the server's log has the traceback)."""
    return _error_response(SmsError("backend exception"))


class SmsApp(Starlette):
    """Starlette with the reference server's own ASGI layers outside Starlette's middleware
    stack, so that the poll fast path skips it and every other response, a 500 from
    Starlette's ServerErrorMiddleware included, passes through ServerTiming."""

    def __init__(
        self, api: Api, auth: Auth, metrics: ServerMetrics, faults: tuple[str, str] | None = None, **kwargs: Any
    ) -> None:
        self._api, self._auth, self._metrics, self._faults = api, auth, metrics, faults
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        app: ASGIApp = PollFastPath(ServerTiming(TokenAuth(inner, self._auth)), self._api.poll_body, self._auth)
        if self._faults is not None:  # inside the metrics: /metrics answers in an outage, and counts its 503s
            admin_token, fault_file = self._faults
            app = FaultInjection(app, admin_token, fault_file)
        return MetricsLayer(app, self._metrics)


def create_app(
    store_url: str,
    tokens: dict[str, str],
    liveness: Liveness | None = None,
    store_latency_ms: str | None = None,
    keys: list[Credentials] | None = None,
    faults: tuple[str, str] | None = None,
) -> Starlette:
    """The reference server for the store at `store_url`; `tokens` maps X-Auth-Token -> project;
    `keys` are the AK/SK pairs whose `SDK-HMAC-SHA256` signatures it accepts (each for its project);
    `liveness` says how polls record agents' visits (the control plane's default: coalesced);
    `store_latency_ms` (a `sim.server.rig.parse_latency` spec) delays every store transaction;
    `faults` (admin token, state file) adds the fault injection of `sim.server.faults`."""
    plane = _LazyPlane(store_url, liveness, store_latency_ms, faultable=faults is not None)
    metrics = ServerMetrics(plane.pending_commands)
    plane.metrics = metrics
    api = Api(ApiCore(plane), resources.files("sim.server").joinpath("openapi.json").read_bytes())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        plane()  # open the store now, in the worker, so the first request does not pay for it
        try:
            yield
        finally:
            plane.close()

    app = SmsApp(
        api,
        Auth(tokens, {c.ak: c for c in keys or []}),
        metrics,
        faults,
        routes=_routes(api),
        lifespan=lifespan,
        exception_handlers={SmsError: _sms_error, HTTPException: _http_error, Exception: _internal_error},
    )
    # `/v3/tasks/` is an unknown route (404), not a redirect to `/v3/tasks`.
    app.router.redirect_slashes = False
    return app


def app_from_env() -> Starlette:
    """The app factory for server workers: the store URL, tokens and liveness come from the environment.

    A worker process dies with the `smsload serve` that started it (sim.lifeline): a kill -9 of the
    server must not leave a worker holding the port and the database."""
    die_with_parent(signal.SIGKILL)
    tokens = json.loads(os.environ.get(ENV_TOKENS, "{}"))
    liveness = Liveness(**json.loads(os.environ[ENV_LIVENESS])) if os.environ.get(ENV_LIVENESS) else None
    keys = [Credentials(*k) for k in json.loads(os.environ.get(ENV_KEYS, "[]"))]
    admin, fault_file = os.environ.get(ENV_ADMIN_TOKEN), os.environ.get(ENV_FAULT_FILE)
    faults = (admin, fault_file) if admin and fault_file else None
    latency = os.environ.get(ENV_STORE_LATENCY) or None
    return create_app(os.environ.get(ENV_DB, "memory://"), tokens, liveness, latency, keys, faults)
