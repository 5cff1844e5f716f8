"""`benchmarks/knee/inflight.py`: the number of requests in flight when each was sent, and the
wait beyond the server's own time by that number, on a requests table whose overlaps are known."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "knee"))

import inflight  # noqa: E402

POLL = "/v1/sms/sources/{source_id}/command"
PROGRESS = "/v3/tasks/{task_id}/progress"


def _requests(rows: list[tuple[str, float, float, float, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["endpoint", "t_start_s", "latency_ms", "server_ms", "ok"])


def test_counts_the_requests_sent_and_not_yet_answered() -> None:
    requests = _requests(
        [
            (POLL, 0.000, 10.0, 4.0, True),  # 0-10 ms: nothing in flight
            (POLL, 0.005, 10.0, 4.0, True),  # 5-15 ms: the first in flight
            (PROGRESS, 0.008, 20.0, 5.0, True),  # 8-28 ms: two in flight
            (POLL, 0.010, 3.0, 2.0, True),  # sent as the first is answered: the 2nd and the progress
            (POLL, 0.009, 50.0, 1.0, False),  # failed: not counted, not in flight
            (PROGRESS, 0.030, 6.0, 5.0, True),  # 30-36 ms: nothing left
        ]
    )
    means, table = inflight.by_inflight(requests, after_s=0.0)
    assert means == {"poll": pytest.approx(1.0), "progress": pytest.approx(1.0)}
    assert table["poll n"].to_dict() == {0: 1, 1: 1, 2: 1}
    assert table.loc[2, "poll ms"] == pytest.approx(1.0) and table.loc[1, "poll ms"] == pytest.approx(6.0)
    assert table["progress n"].to_dict() == {0: 1, 1: 0, 2: 1}
    assert table.loc[2, "progress ms"] == pytest.approx(15.0) and table.loc[0, "progress ms"] == pytest.approx(1.0)
    later, _ = inflight.by_inflight(requests, after_s=0.009)  # the in-flight ones still count
    assert later == {"poll": pytest.approx(2.0), "progress": pytest.approx(0.0)}


def test_groups_in_flight_numbers_by_width_and_compares_the_progress_write_with_the_poll() -> None:
    requests = _requests(
        [
            (POLL, 0.000, 10.0, 4.0, True),  # nothing in flight: beyond 6
            (POLL, 0.005, 10.0, 4.0, True),  # one: beyond 6
            (PROGRESS, 0.008, 20.0, 5.0, True),  # two: beyond 15
            (POLL, 0.010, 3.0, 2.0, True),  # two: beyond 1
            (PROGRESS, 0.011, 12.0, 4.0, True),  # three: beyond 8
            (POLL, 0.012, 9.0, 4.0, True),  # four: beyond 5
        ]
    )
    _, table = inflight.by_inflight(requests, after_s=0.0, cap=4, width=2)
    assert table["poll n"].to_dict() == {0: 2, 2: 1, 4: 1}
    assert table["progress n"].to_dict() == {0: 0, 2: 2, 4: 0}
    assert table.loc[2, "progress ms"] == pytest.approx(11.5) and table.loc[2, "poll ms"] == pytest.approx(1.0)
    assert table.loc[2, "progress / poll"] == pytest.approx(11.5)
    _, capped = inflight.by_inflight(requests, after_s=0.0, cap=3, width=1)  # three and four: one group
    assert capped["poll n"].to_dict() == {0: 1, 1: 1, 2: 1, 3: 1} and capped["progress n"][3] == 1


def test_a_directory_that_is_no_run_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        inflight.main([str(tmp_path)])
    assert exit_.value.code == 2
    assert str(tmp_path) in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        inflight.main([str(tmp_path), "--width", "0"])
    assert exit_.value.code == 2
    assert "--width" in capsys.readouterr().err
