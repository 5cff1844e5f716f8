"""Pure ASGI middleware of the reference server: timing, auth (token or AK/SK), and the poll fast path.

These wrap the Starlette app as plain ASGI callables (not `BaseHTTPMiddleware`, which runs
the app in a task and costs far more per request than the poll itself). The poll,
`GET .../command`, is the request every agent sends every few seconds, so `PollFastPath`,
the outermost layer, answers it in one step (token, poll, Server-Timing) without the other
layers, Starlette's routing, Request object or pydantic; every other request goes on through
`ServerTiming` and `TokenAuth` to Starlette.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from time import perf_counter
from typing import Any

from sim.model.errors import SmsError, Unauthorized
from sim.signing import Credentials, SignatureError, is_signed, verify

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[..., Any]

log = logging.getLogger("sim.server")

JSON_CONTENT_TYPE = (b"content-type", b"application/json")
# Paths anyone may call without a token (a load balancer's health check has none).
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
BODY_LIMIT = 10_240  # the largest request body the API accepts (endpoints.MAX_BODY_BYTES)


def error_json(exc: SmsError) -> bytes:
    return json.dumps(exc.body(), separators=(",", ":")).encode()


async def send_json(send: Callable[[Message], Any], status: int, body: bytes) -> None:
    """Send a complete JSON response in the two ASGI messages."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_CONTENT_TYPE, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>` (the app's time until the response starts) to every
    response, and `body;dur=<ms>` when the app awaited the request's body: the part of `app`
    it spent in those awaits, while the worker's event loop ran other requests. `app - body` is
    the request's own occupancy of the worker, what a load test records as `server_ms`.

    An exception that escapes before a response started (from the layers outside Starlette's
    own 500 handler) becomes 500 SMS.2007 here, logged, never shown to the client, so that
    even those responses carry the header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = perf_counter()
        started = False
        awaited = 0.0  # seconds spent awaiting the request's body (`receive`)

        async def timed_receive() -> Message:
            nonlocal awaited
            t = perf_counter()
            try:
                return await receive()
            finally:
                awaited += perf_counter() - t

        async def timed_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                timing = b"app;dur=%.3f" % ((perf_counter() - t0) * 1000.0)
                if awaited:
                    timing += b", body;dur=%.3f" % (awaited * 1000.0)
                # A new list: the app may hand over a list it shares between responses.
                message["headers"] = [*message.get("headers", ()), (b"server-timing", timing)]
            await send(message)

        try:
            await self.app(scope, timed_receive, timed_send)
        except Exception:
            if started:  # Starlette answered already (500 SMS.2007); the server logs the traceback
                raise
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            await send_json(timed_send, 500, error_json(SmsError("backend exception")))


class Auth:
    """Who is calling: an `X-Auth-Token`, or an AK/SK signature (`SDK-HMAC-SHA256`, as the
    official SDK signs; `sim.signing`). `project(scope, body)` is the caller's project, or raises
    401 SMS.9803 (no valid token), SMS.0202 (bad signature, unknown key) or SMS.0205 (the
    request's date is too far from the server's clock).

    The public error list gives SMS.0202/0205 no HTTP status of their own (it lists what the
    agent reports); an authentication failure is answered 401 here, as SMS.9803 is."""

    def __init__(self, tokens: dict[str, str], keys: dict[str, Credentials] | None = None) -> None:
        # Keyed by the token's bytes: header values arrive as bytes, and that saves a decode per request.
        self.tokens = {token.encode("latin-1"): project for token, project in tokens.items()}
        self.keys = keys or {}

    def signed(self, scope: Scope) -> bool:
        """Whether the request carries an AK/SK signature (and the server knows AK/SK at all)."""
        if not self.keys:
            return False
        for name, value in scope["headers"]:
            if name == b"authorization":
                return is_signed(value.decode("latin-1"))
        return False

    def project(self, scope: Scope, body: bytes = b"") -> str:
        if self.keys and self.signed(scope):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            query = scope.get("query_string", b"").decode("latin-1")
            try:
                creds = verify(self.keys, scope["method"], scope["path"], query, headers, body, time.time())
            except SignatureError as exc:
                raise SmsError(exc.message, code=exc.code, http_status=401) from None
            return creds.project
        for name, value in scope["headers"]:
            if name == b"x-auth-token":
                project = self.tokens.get(value)
                if project is not None:
                    return project
                break
        raise Unauthorized("X-Auth-Token missing or not valid")


async def _read_all(receive: Callable[[], Any], limit: int) -> tuple[bytes, list[Message]]:
    """The request body (at most `limit` bytes are kept for the signature) and the messages read."""
    messages: list[Message] = []
    body = bytearray()
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        if len(body) <= limit:
            body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return bytes(body), messages


class TokenAuth:
    """Maps the caller (`Auth`) to its project (`scope["sms.project"]`), or answers its 401.

    A signed request's body is read here, since the signature covers it, and handed on to the
    app as it arrived."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        body = b""
        if self.auth.signed(scope) and scope["method"] not in ("GET", "HEAD"):
            # Past the size limit the signature cannot matter: the endpoint refuses the body (SMS.2004).
            body, messages = await _read_all(receive, BODY_LIMIT)
            replay = iter(messages)

            async def replayed() -> Message:
                return next(replay, None) or await receive()

            receive = replayed
        try:
            scope["sms.project"] = self.auth.project(scope, body)
        except SmsError as exc:
            await send_json(send, exc.http_status, error_json(exc))
            return
        await self.app(scope, receive, send)


def poll_source_id(path: str) -> str | None:
    """The source id in a poll path (`/v3/sources/{id}/command`, `/v1/sms/sources/{id}/command`)."""
    if not path.endswith("/command"):
        return None
    if path.startswith("/v3/sources/"):
        source_id = path[12:-8]
    elif path.startswith("/v1/sms/sources/"):
        source_id = path[16:-8]
    else:
        return None
    # The same rule as the Starlette routes' `{source_id}`: one non-empty path segment.
    return source_id if source_id and "/" not in source_id else None


class PollFastPath:
    """Answers `GET .../command` directly with `poll_body(project, source_id) -> bytes`, and
    sends everything else on to `app` (ServerTiming -> TokenAuth -> Starlette).

    It is the outermost layer and does for the poll what those layers do, with the same
    statuses, bodies and headers: 401 SMS.9803 without a valid token, the poll's answer or its
    SMS error, 500 SMS.2007 (logged) on an unexpected error, and `Server-Timing` on each. In
    one step, because those layers' per-request closure and calls were a sizeable share of the
    poll's own time (benchmarks/server). The Starlette routes for the poll stay in place (for
    HEAD, wrong methods and the route table the OpenAPI document is checked against)."""

    def __init__(self, app: ASGIApp, poll_body: Callable[[str, str], bytes], auth: Auth) -> None:
        self.app = app
        self.poll_body = poll_body
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            source_id = poll_source_id(scope["path"])
            if source_id is not None:
                scope["sms.endpoint"] = "poll_v3" if scope["path"].startswith("/v3/") else "poll"
                t0 = perf_counter()
                status, body = self._answer(scope, source_id)
                timing = b"app;dur=%.3f" % ((perf_counter() - t0) * 1000.0)
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            JSON_CONTENT_TYPE,
                            (b"content-length", b"%d" % len(body)),
                            (b"server-timing", timing),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope, source_id: str) -> tuple[int, bytes]:
        try:
            return 200, self.poll_body(self.auth.project(scope), source_id)
        except SmsError as exc:
            return exc.http_status, error_json(exc)
        except Exception:  # as ServerTiming: logged, never shown to the client
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            return 500, error_json(SmsError("backend exception"))
