"""Imported by both benchmark locustfiles: the generator's own CPU, RSS and request count.

When `$BENCH_PROBE` names a file, the Locust process appends one JSON line to it when Locust
is initialised (before any user is spawned) and then every `$BENCH_PROBE_EVERY_S` (default 1)
seconds: `[epoch s, CPU s (user + system), RSS bytes, requests, failures, poll requests, users,
sum of response times in ms, connections opened]`.
CPU, RSS and counts come from the same instant, so a window between two lines pairs the CPU
spent with exactly the requests Locust counted in it. Nothing runs per request but a count of
the connections geventhttpclient opens (`ConnectionPool._create_socket`).

`$BENCH_SOCKET_CHECK=select` puts back geventhttpclient's own select()-based check of pooled
sockets (which `loadtests.pooled` replaces by a poll()-based one): the "before" of the
connections comparison.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import gevent
import psutil
from geventhttpclient.connectionpool import ConnectionPool
from locust import events

POLL_NAME = "/v1/sms/sources/{source_id}/command"  # the name both users give the poll
_opened = [0]
_create_socket = ConnectionPool._create_socket


def _counted_create_socket(self: Any) -> Any:
    _opened[0] += 1
    return _create_socket(self)


ConnectionPool._create_socket = _counted_create_socket


@events.init.add_listener
def _start_probe(environment: Any, **_: Any) -> None:
    if os.environ.get("BENCH_SOCKET_CHECK") == "select":
        from loadtests import pooled

        ConnectionPool._is_socket_alive = pooled.ORIGINAL_CHECK
    path = os.environ.get("BENCH_PROBE")
    if not path:
        return
    every_s = float(os.environ.get("BENCH_PROBE_EVERY_S", "1"))
    out = open(path, "a", buffering=1)  # line-buffered: the benchmark reads it as it grows
    me = psutil.Process()

    def line() -> None:
        cpu = me.cpu_times()
        stats = environment.stats
        runner = environment.runner
        out.write(
            json.dumps(
                [
                    time.time(),
                    cpu.user + cpu.system,
                    me.memory_info().rss,
                    stats.total.num_requests,
                    stats.total.num_failures,
                    stats.get(POLL_NAME, "GET").num_requests,
                    runner.user_count if runner is not None else 0,
                    stats.total.total_response_time,
                    _opened[0],
                ]
            )
            + "\n"
        )

    def loop() -> None:
        while True:
            gevent.sleep(every_s)
            line()

    line()  # before spawning: the process with Locust, the locustfile and nothing else
    gevent.spawn(loop)
