"""Liveness rules of the control plane, stepped with explicit times over every store.

A poll records its agent's visit (every poll, coalesced, or never); `connected` in views and in
the listing filter turns false after `disconnect_after_s` of silence, evaluated at the time of
the request that looks, and the next poll brings it back.
"""

from __future__ import annotations

import pytest

from sim.model.api import ApiCore
from sim.model.commands import Command, CommandName
from sim.model.controlplane import ControlPlane, Registration, TaskSpec
from sim.model.intents import Call
from sim.model.lifecycle import Action, OsType, TaskType
from sim.model.liveness import Liveness, LivenessWrite
from sim.model.store import Store

P = "proj"
EVERY = Liveness(LivenessWrite.EVERY_POLL, disconnect_after_s=90.0)
COALESCED = Liveness(LivenessWrite.COALESCED, coalesce_s=30.0, disconnect_after_s=90.0)
OFF = Liveness(LivenessWrite.OFF, disconnect_after_s=90.0)


def _plane(store: Store, liveness: Liveness) -> tuple[ControlPlane, str]:
    cp = ControlPlane(store, liveness=liveness)
    return cp, cp.register(P, Registration(name="web-1", os_type=OsType.LINUX), 0.0)


def _seen(cp: ControlPlane, sid: str, now: float | None = None) -> tuple[bool, float | None]:
    src, _ = cp.get_source(P, sid, now)
    return src.connected, src.last_visit_time


def _listed(cp: ControlPlane, now: float, connected: bool) -> list[str]:
    return [s.name for s in cp.list_sources(P, now, connected=connected)[1]]


def test_every_poll_records_the_visit(store: Store) -> None:
    cp, sid = _plane(store, EVERY)
    for now in (1.0, 2.5, 4.0):
        assert cp.poll_would_write(P, sid, now)
        cp.poll(P, sid, now)
        assert _seen(cp, sid, now) == (True, now)


def test_coalesced_records_at_most_one_visit_per_interval(store: Store) -> None:
    cp, sid = _plane(store, COALESCED)  # registration at 0 is a visit
    recorded = []
    for now in (10.0, 29.9, 30.0, 45.0, 59.9, 60.0, 95.0):
        would = cp.poll_would_write(P, sid, now)
        cp.poll(P, sid, now)
        recorded.append((now, would, _seen(cp, sid, now)[1]))
    assert recorded == [
        (10.0, False, 0.0),
        (29.9, False, 0.0),
        (30.0, True, 30.0),
        (45.0, False, 30.0),
        (59.9, False, 30.0),
        (60.0, True, 60.0),
        (95.0, True, 95.0),
    ]


def test_off_never_records_a_visit_and_never_disconnects(store: Store) -> None:
    cp, sid = _plane(store, OFF)
    for now in (1.0, 100.0, 10_000.0):
        assert not cp.poll_would_write(P, sid, now)
        cp.poll(P, sid, now)
    assert _seen(cp, sid, 1e6) == (True, 0.0)
    assert _listed(cp, 1e6, connected=True) == ["web-1"] and _listed(cp, 1e6, connected=False) == []


def test_silence_disconnects_and_the_next_poll_reconnects(store: Store) -> None:
    cp, sid = _plane(store, EVERY)
    cp.poll(P, sid, 10.0)
    assert _seen(cp, sid, 100.0) == (True, 10.0)  # exactly disconnect_after_s of silence: still connected
    assert _seen(cp, sid, 100.5) == (False, 10.0)
    assert _seen(cp, sid) == (True, 10.0)  # no `now`: as last recorded
    assert _listed(cp, 100.5, connected=False) == ["web-1"] and _listed(cp, 100.5, connected=True) == []
    assert cp.poll_would_write(P, sid, 500.0)
    cp.poll(P, sid, 500.0)
    assert _seen(cp, sid, 500.0) == (True, 500.0)
    assert _listed(cp, 500.0, connected=True) == ["web-1"] and _listed(cp, 500.0, connected=False) == []


def test_coalesced_visits_keep_a_steady_poller_connected(store: Store) -> None:
    cp, sid = _plane(store, COALESCED)
    for now in range(27, 600, 27):  # polls every 27 s: a visit is recorded every other poll at most
        cp.poll(P, sid, float(now))
        assert _seen(cp, sid, now + 26.9)[0], f"disconnected at {now + 26.9}"


def test_the_listing_filter_agrees_with_the_views(store: Store) -> None:
    cp = ControlPlane(store, liveness=EVERY)
    ids = {name: cp.register(P, Registration(name=name, os_type=OsType.LINUX), 0.0) for name in ("a", "b", "c", "d")}
    cp.poll(P, ids["b"], 50.0)
    cp.poll(P, ids["c"], 100.0)
    for now in (80.0, 95.0, 140.0, 180.0, 195.0):
        connected = {name for name, sid in ids.items() if cp.get_source(P, sid, now)[0].connected}
        assert set(_listed(cp, now, connected=True)) == connected
        assert set(_listed(cp, now, connected=False)) == set(ids) - connected
        assert {s.name for s in cp.list_sources(P, now)[1] if s.connected} == connected
    assert set(_listed(cp, 95.0, connected=True)) == {"b", "c"}
    assert set(_listed(cp, 140.0, connected=True)) == {"b", "c"}
    assert set(_listed(cp, 180.0, connected=True)) == {"c"}


def test_a_first_delivery_writes_whatever_the_policy(store: Store) -> None:
    cp, sid = _plane(store, OFF)
    tid = cp.create_task(P, TaskSpec(name="m", type=TaskType.MIGRATE_FILE, source_id=sid), 1.0)
    cp.act(P, tid, Action.START, 2.0)
    assert cp.poll_would_write(P, sid, 3.0)
    assert cp.poll(P, sid, 3.0) == Command(CommandName.START, task_id=tid)
    assert not cp.poll_would_write(P, sid, 4.0)  # delivered: polls are reads again
    assert [c.delivered_at for c in store.commands()] == [3.0]


def test_the_api_shows_connected_as_at_the_request(store: Store) -> None:
    cp, sid = _plane(store, EVERY)
    tid = cp.create_task(P, TaskSpec(name="m", type=TaskType.MIGRATE_FILE, source_id=sid), 1.0)
    core = ApiCore(cp)

    def views(now: float) -> tuple[object, ...]:
        source = core.handle(Call("get_source", source_id=sid), P, now)[1]
        task = core.handle(Call("get_task", task_id=tid), P, now)[1]
        listed = core.handle(Call("list_sources", query={"connected": "false"}), P, now)[1]
        by_id = core.handle(Call("list_sources", query={"id": sid, "connected": "true"}), P, now)[1]
        tasks = core.handle(Call("list_tasks"), P, now)[1]["tasks"]
        return source["connected"], task["connected"], listed["count"], by_id["count"], tasks[0]["connected"]

    assert views(60.0) == (True, True, 0, 1, True)
    assert views(91.0) == (False, False, 1, 0, False)
    assert core.handle(Call("poll", source_id=sid), P, 120.0)[0] == 200
    assert views(120.0) == (True, True, 0, 1, True)
    assert core.handle(Call("get_source", source_id=sid), P, 120.0)[1]["last_visit_time"] == 120_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"write": "sometimes"}, "sometimes"),
        ({"coalesce_s": -1.0}, "coalesce_s"),
        ({"disconnect_after_s": 0.0}, "disconnect_after_s"),
        ({"coalesce_s": 30.0, "disconnect_after_s": 30.0}, "more than coalesce_s"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Liveness(**kwargs)  # type: ignore[arg-type]


def test_every_poll_may_disconnect_sooner_than_a_coalescing_interval() -> None:
    assert Liveness(LivenessWrite.EVERY_POLL, coalesce_s=30.0, disconnect_after_s=10.0).disconnect_after_s == 10.0
    assert Liveness("off").write is LivenessWrite.OFF
