"""The reference server's fault injection: an admin endpoint sets the fault state, a middleware applies it.

`smsload load` walks the scenario's fault timeline (`sim.model.faults.FaultTimeline.changes`)
on the run's clock and PUTs each state to `/smsload/admin/faults` with the admin token
(`X-Admin-Token`; `smsload serve --admin-token` or $SMSLOAD_ADMIN_TOKEN, never on a command
line the harness builds, never in a log). Without an admin token the endpoint does not exist
and no fault layer is installed: a production-like server carries no fault switch.

The state is shared by every worker process through one small JSON file (its path in the
workers' environment): the admin request that lands on one worker replaces the file
atomically, and each request stats it (a few microseconds) and re-reads it when it changed.

The harness's own paths (`/smsload/...`: the export of the run's tables) are never faulted.
What any other request meets, at the door, before it reaches the API (as in the simulation: no worker
work, no store transaction):
- outage `http_503`: 503 SMS.0503;
- outage `refused`: an ASGI application cannot refuse or drop a TCP connection, and granian
  answers 500 for an application that raises or returns without a response. So the server
  answers 503 SMS.0503 with `Connection: close`: every client must reconnect, as after a real
  refusal, but the records show status 503, not status 0 "refused". A scenario meant for
  both worlds alike uses `http_503`;
- `error_rate`: that fraction of requests (drawn per request) answered with its status;
- `latency_ms`: every request waits a sampled delay (asyncio: no worker thread held) first.

One fault is not at the door: `slow_store` (`{"added_ms": DIST, "writes_only": bool}`) slows
the store itself. The layer marks each request with the current slow-store state (a context
variable, so each request sees the state it arrived in and the harness's paths none) and
`FaultableStore`, the worker's store when the server has an admin token, sleeps the sampled
time inside each write transaction (and read, unless `writes_only`), once the transaction has
begun: a blocking sleep, so the worker's event loop is held as by a slow database driver, and
on SQLite the write lock with it (BEGIN IMMEDIATE came first); on PostgreSQL the transaction is
open, its row locks held. With no slow store set a transaction costs one context-variable look-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sim.model.distributions import Distribution
from sim.model.faults import INJECTED_BODY, NO_FAULT, UNAVAILABLE_BODY
from sim.scenario_fields import PositiveDist
from sim.server.admin import ADMIN_PATH
from sim.server.middleware import JSON_CONTENT_TYPE, ASGIApp, Message, Scope, send_json

ENV_FAULT_FILE = "SMSLOAD_SERVE_FAULT_FILE"  # the shared fault state's file, set by `smsload serve`

_UNAVAILABLE = json.dumps(UNAVAILABLE_BODY, separators=(",", ":")).encode()
_INJECTED = json.dumps(INJECTED_BODY, separators=(",", ":")).encode()


class SlowStoreState(BaseModel):
    """A slow store: `added_ms` more per write transaction (and read, unless `writes_only`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    added_ms: PositiveDist
    writes_only: bool = True


class FaultState(BaseModel):
    """The body of PUT /smsload/admin/faults (as `sim.model.faults` states it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    outage: Literal["refused", "http_503"] | None = None
    latency_ms: PositiveDist | None = None
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0, allow_inf_nan=False)
    error_status: Literal[500, 503] = 503
    slow_store: SlowStoreState | None = None


# The slow-store state the current request arrived in (set by FaultInjection, read by FaultableStore).
_SLOW_STORE: ContextVar[SlowStoreState | None] = ContextVar("smsload_slow_store", default=None)


class FaultableStore:
    """The worker's store under a fault switch: a slow store's added time slept inside its transactions."""

    def __init__(self, store: Any, rng: random.Random | None = None) -> None:
        self._store, self._rng = store, rng or random.Random()

    def read(self) -> Any:
        slow = _SLOW_STORE.get()
        if slow is None or slow.writes_only:
            return self._store.read()
        return _SlowUnit(self._store.read(), slow.added_ms.sample(self._rng) / 1000.0)

    def write(self) -> Any:
        slow = _SLOW_STORE.get()
        if slow is None:
            return self._store.write()
        return _SlowUnit(self._store.write(), slow.added_ms.sample(self._rng) / 1000.0)

    def __getattr__(self, name: str) -> Any:  # commands(), events(), close(), ...: the store's own
        return getattr(self._store, name)


class _SlowUnit:
    """A transaction that, once begun (its locks taken), blocks for `delay` seconds."""

    __slots__ = ("inner", "delay")

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def __enter__(self) -> Any:
        tx = self.inner.__enter__()
        try:
            time.sleep(self.delay)  # blocking on purpose: the worker (and its locks) held, as by a slow database
        except BaseException:
            self.inner.__exit__(*sys.exc_info())
            raise
        return tx

    def __exit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)


def new_fault_file() -> str:
    """A fresh state file holding no fault, in a private temporary directory (the caller removes it)."""
    directory = tempfile.mkdtemp(prefix="smsload-faults-")
    path = os.path.join(directory, "faults.json")
    _write(path, NO_FAULT)
    return path


def remove_fault_file(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
        os.rmdir(os.path.dirname(path))


def _write(path: str, state: dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f)
    os.replace(tmp, path)  # atomic: a worker reads the old state or the new, never half of one


class FaultInjection:
    """The outermost layer when the server has an admin token: the admin endpoint and the faults."""

    def __init__(self, app: ASGIApp, admin_token: str, path: str, rng: random.Random | None = None) -> None:
        self.app, self.path = app, path
        self._token = admin_token.encode("latin-1")
        self._rng = rng or random.Random()
        self._stamp: int | None = None
        self._state = FaultState()
        self._latency: Distribution | None = None

    def _current(self) -> FaultState:
        try:
            stamp = os.stat(self.path).st_mtime_ns
        except OSError:
            return self._state
        if stamp != self._stamp:
            with contextlib.suppress(OSError, ValueError, ValidationError):
                with open(self.path, encoding="utf-8") as f:
                    self._state = FaultState.model_validate(json.load(f))
                self._latency = self._state.latency_ms
                self._stamp = stamp
        return self._state

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == ADMIN_PATH:
            await self._admin(scope, receive, send)
            return
        if scope["path"].startswith("/smsload/"):  # the harness's own export API: never faulted
            _SLOW_STORE.set(None)
            await self.app(scope, receive, send)
            return
        state = self._current()
        if state.outage is not None:
            await _answer(send, 503, _UNAVAILABLE, close=state.outage == "refused")
            return
        if state.error_rate and self._rng.random() < state.error_rate:
            await _answer(send, state.error_status, _UNAVAILABLE if state.error_status == 503 else _INJECTED)
            return
        if self._latency is not None:
            await asyncio.sleep(self._latency.sample(self._rng) / 1000.0)
        _SLOW_STORE.set(state.slow_store)
        await self.app(scope, receive, send)

    async def _admin(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        given = next((v for k, v in scope["headers"] if k == b"x-admin-token"), b"")
        if not hmac.compare_digest(given, self._token):
            await send_json(send, 401, b'{"error_code":"SMS.9803","error_msg":"X-Admin-Token missing or not valid"}')
            return
        if scope["method"] == "GET":
            await send_json(send, 200, json.dumps(self._current().model_dump(mode="json")).encode())
            return
        if scope["method"] != "PUT":
            await send_json(send, 405, b'{"error_code":"SMS.2003","error_msg":"use GET or PUT"}')
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > 65536:
                break
        try:
            state = FaultState.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            text = json.dumps({"error_code": "SMS.9801", "error_msg": f"{where}: {first['msg']}"})
            await send_json(send, 400, text.encode())
            return
        dumped = state.model_dump(mode="json")
        _write(self.path, dumped)
        await send_json(send, 200, json.dumps(dumped).encode())


async def _answer(send: Callable[[Message], Any], status: int, body: bytes, close: bool = False) -> None:
    headers = [JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
