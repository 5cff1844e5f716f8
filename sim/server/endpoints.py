"""The reference server's HTTP layer over the API core: one request in, one `ApiCore` call.

Every rule (conversion, defaults, checks, views, paging) lives in `sim.model.api.ApiCore`;
an endpoint here only does HTTP: it checks the body's Content-Type and size, decodes its
JSON, takes the path parameters and the query, calls the core with the caller's project and
`time.time()`, and renders the answer. Core calls are synchronous and run on the event
loop's thread: the store holds one connection per worker process, so handing them to a
thread pool would add a thread hop per request and buy no concurrency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from sim.model.api import ApiCore
from sim.model.commands import NO_COMMAND_JSON
from sim.model.errors import InvalidRequest, SmsError
from sim.model.intents import WRITE_ENDPOINTS, Call

MAX_BODY_BYTES = 10_240
EMPTY_OBJECT = NO_COMMAND_JSON.encode()
# Endpoints whose request has a JSON body (the others ignore one): every write but DELETE.
BODY_ENDPOINTS = WRITE_ENDPOINTS - {"delete_task"}

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc, separators=(",", ":")).encode(), status, media_type="application/json")


def _old_code(code: str, msg: str) -> SmsError:
    """The old API's request-format errors, with the HTTP status its error table gives (401)."""
    return SmsError(msg, code=code, http_status=401)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_body(request: Request) -> Any:
    """The request body as decoded JSON (None when empty): SMS.2006 wrong Content-Type, SMS.2004
    too big, SMS.2005 no Content-Type on a body, SMS.9801 not JSON. The API core checks the rest."""
    ctype = request.headers.get("content-type")
    if ctype is not None and ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise _old_code("SMS.2006", f"Content-Type must be application/json, got {ctype!r}")
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _old_code("SMS.2004", f"request body is over {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    try:
        async for chunk in request.stream():  # a chunked body has no Content-Length: count it
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                raise _old_code("SMS.2004", f"request body is over {MAX_BODY_BYTES} bytes")
    except ClientDisconnect:
        # Nobody is left to read an answer; an error response (not a logged traceback) ends the request.
        raise InvalidRequest("the client disconnected before sending the whole body") from None
    if ctype is None and raw:
        raise _old_code("SMS.2005", "Content-Type not specified (expected application/json)")
    if not raw:
        return None
    try:  # JSON has no NaN or Infinity, whatever Python's json module would accept
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None


class Api:
    """The HTTP endpoints over one `ApiCore`."""

    def __init__(self, core: ApiCore, openapi: bytes) -> None:
        self.core = core
        self._openapi = openapi

    def poll_body(self, project: str, source_id: str) -> bytes:
        """The poll's response body, for `PollFastPath`: the head command, or `{}`."""
        command = self.core.poll(project, source_id, time.time())
        return EMPTY_OBJECT if command is None else command.to_json().encode()

    def endpoint(self, name: str) -> Endpoint:
        """The Starlette endpoint for the API core's endpoint `name`."""
        core, has_body = self.core, name in BODY_ENDPOINTS

        async def handle(request: Request) -> Response:
            params = request.path_params
            call = Call(
                name,
                source_id=params.get("source_id", ""),
                task_id=params.get("task_id", ""),
                body=await read_body(request) if has_body else None,
                query=request.query_params,
            )
            status, doc = core.handle(call, request.scope["sms.project"], time.time())
            return json_response(doc, status)

        handle.__name__ = name
        return handle

    async def healthz(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type="application/json")
