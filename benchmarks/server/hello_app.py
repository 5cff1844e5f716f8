"""The baseline of the server benchmark: a plain ASGI app that answers every request with a
small JSON body, served by granian exactly as `smsload serve` serves the reference server.

Run as `python benchmarks/server/hello_app.py [--port N]` (port 0, the default, picks a free
one). It prints `listening on http://127.0.0.1:PORT` like `smsload serve`, so
`sim.server.process.wait_ready` and `stop_process` handle both servers the same way, and it
stops cleanly on SIGINT/SIGTERM (granian's main process handles them).

"Exactly as": the server is started by the reference server's own `_run_granian` (same
interface, worker count, log level and every other option), with only the app factory
swapped for `create_app` below. A copy of the options here could drift from the real ones.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

BODY = b'{"hello":"world"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def hello(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[dict[str, Any]], Any]) -> None:
    if scope["type"] == "lifespan":  # answer startup and shutdown, as the reference server's app does
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def create_app() -> Callable[..., Any]:
    """The app factory granian's worker calls (the reference server's is a factory too)."""
    return hello


def main() -> int:
    from sim.server import cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    port = cli.check_listen("127.0.0.1", args.port)
    print(f"hello_app: listening on http://127.0.0.1:{port}", flush=True)
    cli.APP_FACTORY = "hello_app:create_app"  # read by _run_granian; the worker imports it by name
    cli._run_granian("127.0.0.1", port, 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
