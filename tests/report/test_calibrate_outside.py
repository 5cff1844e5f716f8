"""The server's time outside the handler, per endpoint, and the body's awaits (`requeue_bodies`).

A load test's latency - Server-Timing of an undisturbed request is the round trip (the same for
every endpoint) plus the server's time outside the handler, so calibration takes each
endpoint's difference from the mix as its own outside time. Checked on a simulated run dressed
as a load test whose progress writes spend 0.8 ms more outside their handler than the polls
(and whose polls that record a visit take longer: `poll_write`, replayed from the liveness);
and on real granian that a request body reaches the app in two ASGI messages (two awaits that
may hand the event loop over; `BODY_PASSES` re-queues, as many as the knee rig's progress write
is best matched with below saturation).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtests.processes import free_loopback_port
from sim.des.run import run_des
from sim.report import calibrate_requests as which
from sim.report.calibrate import BODY_PASSES, REQUEUE_AT, calibrate
from sim.scenario import parse_scenario

FLEET = """
name: outside-test
seed: 3
duration_s: 40
fleet:
  agents: 60
  arrival: {kind: ramp, duration_s: 2}
  disk_gb: 100000
agent:
  poll_interval_s: 1
  poll_jitter_s: 0.2
  progress_interval_s: 1
  bandwidth_mbps: 1
  subtask_s: 0
operator:
  tasks: {kind: waves, waves: [{at_s: 2, count: 20}]}
  check_interval_s: 5
  delete_at_end: false
server:
  workers: 1
  service_ms:
    default: {dist: lognormal, median: 1.0, sigma: 0.2}
    progress: {dist: lognormal, median: 2.0, sigma: 0.2}
    poll_write: {dist: lognormal, median: 3.0, sigma: 0.2}
  rtt_ms: {dist: lognormal, median: 1.5, sigma: 0.2}
"""
EXTRA_MS = 0.8  # what the dressed-up server spends outside the progress handler beyond a poll's


def _as_load_test(src: Path, dst: Path) -> None:
    """`src` (a simulation) as a load test whose progress writes take EXTRA_MS longer outside the handler."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps({**manifest, "executor": "locust"}))
    table = pq.read_table(dst / "requests.parquet")
    df = table.to_pandas()
    progress = df["endpoint"].astype(str).str.endswith("/progress")
    df.loc[progress, "latency_ms"] += EXTRA_MS
    df["queue_wait_ms"] = float("nan")  # a load test does not know its queue wait
    pq.write_table(pa.Table.from_pandas(df, schema=table.schema, preserve_index=False), dst / "requests.parquet")


def test_each_endpoint_gets_its_own_time_outside_the_handler(tmp_path: Path) -> None:
    sim = run_des(parse_scenario(FLEET), tmp_path / "sim")
    _as_load_test(sim, tmp_path / "load")
    cal = calibrate(tmp_path / "load", after_s=5.0)
    outside = cal.outside_ms
    assert {"poll", "progress", "default"} <= set(outside), outside
    assert outside["progress"] - outside["poll"] == pytest.approx(EXTRA_MS, abs=0.1)
    assert outside["default"] == cal.overhead_ms and min(outside.values()) >= 0
    # Charged as service: the progress write's mean service is its handler's + its outside time.
    assert cal.service["progress"].dist.mean == pytest.approx(2.0 * 1.0202 + outside["progress"], rel=0.05)
    assert (cal.scenario.server.requeue_bodies, cal.scenario.server.requeue_at) == (BODY_PASSES, REQUEUE_AT)
    # The polls that recorded a visit (coalesced: 30 s after registering, so once per agent here),
    # replayed from the scenario's liveness, get their own service: 3 ms handler + the poll's outside.
    wrote = cal.service["poll_write"]
    assert 50 <= wrote.n <= 70, wrote
    assert wrote.dist.mean == pytest.approx(3.0 * 1.0202 + outside["poll"], rel=0.05)
    assert cal.service["poll"].dist.mean == pytest.approx(1.0 * 1.0202 + outside["poll"], rel=0.05)
    # The simulation itself is calibrated without offsets: its service time is the whole occupancy.
    assert calibrate(sim, after_s=5.0).outside_ms == {"default": 0.0}


def test_service_and_round_trip_come_from_requests_sent_with_nothing_in_flight(tmp_path: Path) -> None:
    """A simulated server at ~50% load dressed as a load test (its `server_ms` is the service
    alone; its queue wait unknown). The requests no other overlapped are the quick ones; the
    fit must not be (it takes those sent with nothing in flight), and the round trip must not
    hold the queue the simulation adds itself."""
    busy = FLEET.replace("agents: 60", "agents: 100").replace("count: 20", "count: 30")
    busy = busy.replace("median: 1.0, sigma: 0.2", "median: 3.5, sigma: 0.6").replace("median: 2.0", "median: 5.0")
    sim = run_des(parse_scenario(busy), tmp_path / "sim")
    _as_load_test(sim, tmp_path / "load")
    cal = calibrate(tmp_path / "load", after_s=5.0)
    assert cal.utilisation > 0.4, cal.utilisation
    req = pq.read_table(tmp_path / "load" / "requests.parquet").to_pandas()
    req = req[req["ok"] & (req["t_start_s"] >= 5.0)]
    polls = req["endpoint"].astype(str).str.endswith("/command")
    true_mean = float(req.loc[polls, "server_ms"].mean())
    quick = float(req.loc[polls & which.alone(req), "server_ms"].mean())
    assert quick < 0.97 * true_mean  # what the fit must not follow
    fitted = cal.service["poll"].dist.mean - cal.outside_ms.get("poll", cal.overhead_ms)
    assert fitted == pytest.approx(true_mean, rel=0.05)  # the quick ones' fit: -11%
    # The round trip as drawn (lognormal, median 1.5 ms), not plus a queue.
    assert cal.rtt.dist.quantile(0.5) == pytest.approx(1.5, rel=0.05)
    assert cal.rtt.dist.quantile(0.95) == pytest.approx(1.5 * math.exp(1.645 * 0.2), rel=0.1)


def test_endpoints_seen_before_the_window_are_fitted_from_the_whole_run(tmp_path: Path) -> None:
    """The operator's task wave comes at the fleet's arrival, before the calibration window:
    its endpoints' service (8 ms here against a poll's 1 ms) is fitted from the whole run, not
    left to `default` = the poll's."""
    costly = FLEET.replace(
        "    progress: {dist: lognormal, median: 2.0, sigma: 0.2}\n",
        "    progress: {dist: lognormal, median: 2.0, sigma: 0.2}\n"
        "    create_task: {dist: lognormal, median: 8.0, sigma: 0.2}\n"
        "    action: {dist: lognormal, median: 8.0, sigma: 0.2}\n",
    )
    sim = run_des(parse_scenario(costly), tmp_path / "sim")
    _as_load_test(sim, tmp_path / "load")
    cal = calibrate(tmp_path / "load", after_s=10.0)  # the wave (at 2 s) is before it
    default = cal.service["default"]
    assert "whole run" in default.source, default
    # `default` pools the endpoints without a fit of their own, from the whole run's requests
    # sent with nothing in flight: the wave's (8 ms) and the agents' few others (1 ms).
    req = pq.read_table(tmp_path / "load" / "requests.parquet").to_pandas()
    names = which.endpoint_names(req)
    rest = ~pd.Series(names).isin([*cal.service, "poll_v3"]).to_numpy() & which.first_in(req)
    assert rest.sum() == default.n
    assert default.dist.mean == pytest.approx(float(req.loc[rest, "server_ms"].mean()) + cal.overhead_ms, rel=0.1)
    assert default.dist.mean > 3 * cal.service["poll"].dist.mean  # the window alone: a poll's


APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    messages = []
    while True:
        message = await receive()
        messages.append(message.get("more_body", False))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": repr(messages).encode()})
"""


def test_granian_hands_a_body_over_in_two_messages(tmp_path: Path) -> None:
    pytest.importorskip("granian")
    (tmp_path / "bodyapp.py").write_text(APP)
    port = free_loopback_port()
    cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen([*cmd, "bodyapp:app"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v3/tasks/t/progress", data=b'{"progress": 1}', method="PUT"
        )
        deadline, answer = time.monotonic() + 20, ""
        while not answer:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = response.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert answer == "[True, False]"  # the bytes, then an empty last message: two awaits
        assert 1 <= BODY_PASSES <= answer.count(",") + 1
    finally:
        server.terminate()
        server.wait(10)
