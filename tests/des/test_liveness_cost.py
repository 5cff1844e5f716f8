"""The simulated server charges the liveness write: a poll that records a visit is a write.

Seeded runs of one small fleet, differing only in `server.liveness` and `server.write_lock`:
polls that write take the `poll_write` service time instead of the poll's, and with the write
lock they are served one at a time, which shows in the run's own request table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sim.des.run import run_des
from sim.records import load_run
from sim.scenario import validate_scenario

POLL = "/v1/sms/sources/{source_id}/command"
READ_MS, WRITE_MS = 0.5, 3.0
AGENTS, INTERVAL_S = 300, 1.0  # 300 polls/s: as writes, 0.9 of the single write lock


def _polls(tmp_path: Path, name: str, liveness: dict[str, Any], write_lock: bool = True) -> pd.DataFrame:
    scenario = validate_scenario(
        {
            "name": name,
            "seed": 5,
            "duration_s": 20,
            "fleet": {"agents": AGENTS, "arrival": {"kind": "ramp", "duration_s": INTERVAL_S}},
            "agent": {"poll_interval_s": INTERVAL_S, "poll_jitter_s": 0.2},
            "server": {
                "workers": 4,
                "write_lock": write_lock,
                "rtt_ms": 0,
                "service_ms": {"default": 0.01, "poll": READ_MS, "poll_write": WRITE_MS},
                "liveness": {"disconnect_after_s": 10, **liveness},
            },
        }
    )
    r = load_run(run_des(scenario, tmp_path / name)).requests
    return r[(r["endpoint"] == POLL) & (r["t_start_s"] >= 2.0)]  # after every agent's registration


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("liveness")
    return {
        "off": _polls(tmp, "off", {"write": "off"}),
        "coalesced": _polls(tmp, "coalesced", {"write": "coalesced", "coalesce_s": 2.5}),
        "every_poll": _polls(tmp, "every-poll", {"write": "every_poll"}),
        "every_poll_no_lock": _polls(tmp, "every-poll-no-lock", {"write": "every_poll"}, write_lock=False),
    }


def _overlaps(polls: pd.DataFrame) -> int:
    """Polls whose service began before the previous one's ended (the round trip is 0 here)."""
    start = (polls["t_start_s"] + polls["queue_wait_ms"] / 1000.0).sort_values()
    end = start + polls.loc[start.index, "server_ms"] / 1000.0
    return int((start.to_numpy()[1:] < end.to_numpy()[:-1] - 1e-9).sum())


def test_polls_that_write_take_the_write_service_time(runs: dict[str, pd.DataFrame]) -> None:
    assert set(runs["off"]["server_ms"]) == {READ_MS}
    assert set(runs["every_poll"]["server_ms"]) == {WRITE_MS}
    coalesced = (runs["coalesced"]["server_ms"] == WRITE_MS).mean()
    # Polls about 1 s apart, a visit recorded at most every 2.5 s: about one poll in three writes.
    assert 0.2 < coalesced < 0.45, coalesced
    assert (
        runs["off"]["server_ms"].mean() < runs["coalesced"]["server_ms"].mean() < runs["every_poll"]["server_ms"].mean()
    )


def test_the_write_lock_serialises_writing_polls(runs: dict[str, pd.DataFrame]) -> None:
    with_lock, without = runs["every_poll"], runs["every_poll_no_lock"]
    assert _overlaps(with_lock) == 0 and _overlaps(without) > 100
    # 0.9 of one lock against 0.225 of each of four workers: the lock's queue is the long one.
    assert with_lock["queue_wait_ms"].mean() > 20 * max(without["queue_wait_ms"].mean(), 0.01)
    assert runs["off"]["queue_wait_ms"].mean() < 0.1 < 1.0 < with_lock["queue_wait_ms"].mean()  # simulated ms
    assert len(with_lock) == pytest.approx(len(runs["off"]), rel=0.1)  # the same fleet, polling alike
