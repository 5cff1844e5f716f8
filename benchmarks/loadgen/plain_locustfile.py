"""The baseline: a plain FastHttpUser that registers a source once, then polls it at a constant pace.

Same request as the agent user's poll (`GET /v1/sms/sources/{id}/command`, X-Auth-Token,
named by its path template), same rate per user (one poll every `$BENCH_INTERVAL_S`, paced), first poll at a
uniform random phase within one interval, as the agent model's stationary start does.
"""

from __future__ import annotations

import itertools
import os
import random
import time

import gevent
import probe  # noqa: F401  (the CPU/RSS/request-count probe)
from locust import FastHttpUser, task

from loadtests import pooled  # noqa: F401  (the same pooled-socket check as the agents)

INTERVAL_S = float(os.environ.get("BENCH_INTERVAL_S", "30"))
_ids = itertools.count()


class PlainUser(FastHttpUser):
    def wait_time(self) -> float:
        # Like constant_pacing, but paced from the first poll (constant_pacing counts from the
        # user's creation, which would pull every user back to its spawn time's phase).
        self.next_at += INTERVAL_S
        return max(0.0, self.next_at - time.monotonic())

    def on_start(self) -> None:
        self.headers = {"X-Auth-Token": os.environ["SMS_AUTH_TOKEN"]}
        i = next(_ids)
        body = {"name": f"plain-{i:07d}", "os_type": "LINUX", "ip": f"198.19.{(i >> 8) & 255}.{i & 255}"}
        while True:
            with self.client.post("/v3/sources", json=body, headers=self.headers, catch_response=True) as r:
                if r.status_code == 200:
                    self.path = f"/v1/sms/sources/{r.json()['id']}/command"
                    break
            gevent.sleep(1.0)  # the server is busy with the others' registrations: try again
        gevent.sleep(random.uniform(0.0, INTERVAL_S))
        self.next_at = time.monotonic()  # the first poll: now

    @task
    def poll(self) -> None:
        self.client.get(self.path, name=probe.POLL_NAME, headers=self.headers)
