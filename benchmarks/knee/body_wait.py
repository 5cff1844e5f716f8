"""Where a request's body makes it wait again on granian's event loop, against a fresh request.

    .venv/bin/python benchmarks/knee/body_wait.py [--clients 120,200,290] [--seconds 40]

The simulated server re-queues a request with a body (`server.requeue_bodies` times) behind the
share `server.requeue_at` of those waiting (`sim.des.engine`, README "A body queues again").
This measures that share on granian alone, without the reference server. One granian worker
(ASGI, pinned to core 1 where there are two) runs a tiny app whose every request blocks the
loop for `--handler-ms` (the store, as on the knee rig, so about 240 requests/s at 4 ms) and
whose PUT first reads its body as Starlette does (`receive()` until `more_body` is false). The
app counts the fresh requests (first steps) and the body continuations it runs. Each request
carries its send time, and the answer says how long the request waited for its first step and,
for a PUT, how long each `receive()` took, how many handles were ready on the loop when it was
awaited, and how many fresh requests and other continuations ran before it resumed.

`--clients` paced clients (geventhttpclient, on core 0; each sends a request every second +-
10%, a PUT with a 15-byte body one time in ten, else a GET) run for `--seconds`; the first 10 s
are left out. Printed per client count, over the PUTs (means): the GET's wait for its first
step and the fresh requests that makes (the wait times the throughput), each `receive()`
wait, the fresh requests run meanwhile, and their share of the GET's: the share of the queue
a body waits behind again (1: all of it, as a FIFO queue would have it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtests.processes import free_loopback_port
from sim.server.process import stop_process

APP = """
import asyncio, json, time
HANDLER_S = {handler_s}
FRESH, RESUMED = [0], [0]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    loop = asyncio.get_running_loop()
    FRESH[0] += 1
    sent = float(dict(scope["headers"]).get(b"x-sent", b"0"))
    info = {{"first": (time.time() - sent) * 1000, "passes": []}}
    if scope["method"] == "PUT":
        while True:
            t, ready, fresh, resumed = time.time(), len(loop._ready), FRESH[0], RESUMED[0]
            message = await receive()
            RESUMED[0] += 1
            info["passes"].append([(time.time() - t) * 1000, ready, FRESH[0] - fresh, RESUMED[0] - 1 - resumed])
            if not message.get("more_body"):
                break
    time.sleep(HANDLER_S)
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": json.dumps(info).encode()}})
"""
WARMUP_S = 10.0


def _wait_up(port: int, server: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: granian exited with {server.returncode} before it listened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: granian did not listen on 127.0.0.1:{port} within {timeout_s:g} s")


def drive(port: int, clients: int, seconds: float) -> list[dict[str, Any]]:
    """`clients` paced clients for `seconds`: each answer's figures, with its kind and send time."""
    import gevent
    from geventhttpclient import HTTPClient

    rows: list[dict[str, Any]] = []
    t_end = time.time() + seconds

    def client(i: int) -> None:
        http = HTTPClient("127.0.0.1", port, connection_timeout=10, network_timeout=60)
        rng = random.Random(i)
        gevent.sleep(rng.uniform(0, 5))  # the fleet arrives over 5 s
        while time.time() < t_end:
            put, t = rng.random() < 0.1, time.time()
            headers = {"x-sent": repr(t), "content-type": "application/json"}
            answer = (
                http.request("PUT", "/body", body=b'{"progress": 1}', headers=headers)
                if put
                else http.get("/", headers=headers)
            )
            rows.append({**json.loads(answer.read()), "put": put, "t": t})
            gevent.sleep(max(0.0, 1.0 + rng.uniform(-0.1, 0.1) - (time.time() - t)))

    gevent.joinall([gevent.spawn(client, i) for i in range(clients)], raise_error=True)
    return rows


def summary(rows: list[dict[str, Any]], seconds: float) -> dict[str, float]:
    """The run's figures after WARMUP_S (means; see the module's docstring)."""
    t0 = min(r["t"] for r in rows)
    kept = [r for r in rows if r["t"] - t0 >= WARMUP_S]
    gets, puts = [r for r in kept if not r["put"]], [r for r in kept if r["put"]]
    if not gets or not puts:
        raise SystemExit("error: too few requests after the warm-up: raise --seconds")
    throughput = len(kept) / max(seconds - WARMUP_S, 1e-9)
    get_wait = sum(r["first"] for r in gets) / len(gets)
    out = {"throughput": throughput, "get_wait": get_wait, "ahead": get_wait / 1000 * throughput}
    for j in range(min(len(r["passes"]) for r in puts)):
        wait, ready, fresh, resumed = (sum(r["passes"][j][k] for r in puts) / len(puts) for k in range(4))
        out |= {f"wait{j}": wait, f"ready{j}": ready, f"fresh{j}": fresh, f"resumed{j}": resumed}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--clients", default="120,200,290", help="client counts, one run each (default 120,200,290)")
    p.add_argument(
        "--seconds", type=float, default=40.0, help="each run's length, the first 10 s left out (default 40)"
    )
    p.add_argument("--handler-ms", type=float, default=4.0, help="how long each request blocks the loop (default 4)")
    args = p.parse_args(argv)
    try:
        counts = [int(x) for x in args.clients.split(",")]
    except ValueError:
        p.error(f"--clients: expected client counts separated by commas, got {args.clients!r}")
    if not counts or not all(1 <= c <= 2000 for c in counts):
        p.error(f"--clients: expected counts from 1 to 2000, got {args.clients!r}")
    if not WARMUP_S + 5 <= args.seconds <= 600 or not 0 < args.handler_ms <= 100:
        p.error(
            f"--seconds in [{WARMUP_S + 5:g}, 600] and --handler-ms in (0, 100], "
            f"got {args.seconds:g} and {args.handler_ms:g}"
        )
    cores = sorted(os.sched_getaffinity(0))
    server_cores, client_cores = ({cores[1]}, {cores[0]}) if len(cores) >= 2 else (set(cores), set(cores))
    with tempfile.TemporaryDirectory(prefix="body-wait-") as tmp:
        (Path(tmp) / "bodyapp.py").write_text(APP.format(handler_s=args.handler_ms / 1000))
        port = free_loopback_port()
        cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(
            [*cmd, "bodyapp:app"],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, server_cores),
        )
        try:
            _wait_up(port, server)
            os.sched_setaffinity(0, client_cores)
            print(
                f"granian, one worker on core(s) {sorted(server_cores)}; handler {args.handler_ms:g} ms; "
                f"clients on {sorted(client_cores)}"
            )
            print(
                "| clients | requests/s | GET wait for its first step ms (fresh requests) | PUT receive() waits ms "
                "| ready handles at await | fresh / other bodies run meanwhile | share of the GET's fresh |"
            )
            print("|---|---|---|---|---|---|---|")
            for clients in counts:
                s = summary(drive(port, clients, args.seconds), args.seconds)
                n = sum(1 for k in s if k.startswith("wait"))
                cells = [
                    ", ".join(f"{s[f'{key}{j}']:.{d}f}" for j in range(n)) for key, d in (("wait", 1), ("ready", 0))
                ]
                meanwhile = ", ".join(f"{s[f'fresh{j}']:.0f} / {s[f'resumed{j}']:.0f}" for j in range(n))
                share = ", ".join(f"{s[f'fresh{j}'] / s['ahead']:.2f}" for j in range(n))
                print(
                    f"| {clients} | {s['throughput']:.0f} | {s['get_wait']:.1f} ({s['ahead']:.0f}) | {cells[0]} "
                    f"| {cells[1]} | {meanwhile} | {share} |",
                    flush=True,
                )
        finally:
            stop_process(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
