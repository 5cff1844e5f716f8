"""`/metrics` of the reference server: what it counted, read back as any Prometheus would read it."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from sim.server.process import run_server
from tests.server.conftest import Sms


def scrape(base_url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def requests(samples: dict, endpoint: str, status: int) -> float:
    return samples.get(("smsload_server_requests_total", (("endpoint", endpoint), ("status", str(status)))), 0.0)


def test_metrics_count_requests_by_endpoint_and_status_and_the_pending_commands(reference_server) -> None:
    url, tokens = reference_server
    sms = Sms(url, tokens["alpha"])
    before = scrape(url)
    source_id = sms.register("metrics")
    for _ in range(3):
        sms.poll(source_id, "v1")
    httpx.get(f"{url}/v3/sources/{source_id}/command", headers={"X-Auth-Token": "wrong"})
    httpx.get(f"{url}/no/such/path", headers={"X-Auth-Token": tokens["alpha"]})
    task_id = sms.create_task(source_id)
    sms.action(task_id, "start")
    queued = scrape(url)
    assert requests(queued, "register", 200) - requests(before, "register", 200) == 1
    assert requests(queued, "poll", 200) - requests(before, "poll", 200) == 3
    assert requests(queued, "poll_v3", 401) - requests(before, "poll_v3", 401) == 1
    assert requests(queued, "unmatched", 404) - requests(before, "unmatched", 404) == 1
    pending = ("smsload_server_pending_commands", ())
    assert queued[pending] - before[pending] == 1  # the START, not yet acknowledged
    sms.poll(source_id)
    sms.ack(source_id, "START")
    after = scrape(url)
    assert after[pending] == before[pending]
    # The handler-time histogram counts the same requests; the store was timed; nothing is in flight
    # but the scrape itself, which is answered before it would count.
    polls = ("smsload_server_request_seconds_count", (("endpoint", "poll"),))
    assert after[polls] - before.get(polls, 0.0) == 3
    assert after[("smsload_server_store_seconds_count", (("kind", "write"),))] > 0
    assert after[("smsload_server_in_flight", ())] == 0


def test_several_workers_are_counted_together(tmp_path: Path) -> None:
    token = secrets.token_hex(8)
    with run_server(f"sqlite:///{tmp_path / 'sms.sqlite3'}", [token], tmp_path / "server.log", workers=2) as server:
        sms = Sms(server.base_url, token)
        source_id = sms.register("two-workers")
        for _ in range(40):  # new connections, so both workers get some
            httpx.get(f"{server.base_url}/v3/sources/{source_id}/command", headers={"X-Auth-Token": token})
        samples = scrape(server.base_url)
        assert requests(samples, "poll_v3", 200) == 40
        assert requests(samples, "register", 200) == 1
