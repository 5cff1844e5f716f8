"""`benchmarks/knee/body_wait.py`: its figures from answers whose waits are known, and its usage errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "knee"))

import body_wait  # noqa: E402


def test_the_share_is_the_fresh_requests_run_during_a_pass_over_those_ahead_of_a_get() -> None:
    warm = body_wait.WARMUP_S
    rows = [{"put": False, "t": 0.0, "first": 999.0, "passes": []}]  # the warm-up: left out
    rows += [{"put": False, "t": warm + i, "first": 100.0, "passes": []} for i in range(9)]
    rows += [{"put": True, "t": warm + 1.5, "first": 40.0, "passes": [[60.0, 30, 12, 2], [50.0, 28, 8, 0]]}]
    s = body_wait.summary(rows, seconds=warm + 1.0)  # 10 requests kept in 1 s
    assert s["throughput"] == pytest.approx(10.0)
    assert s["get_wait"] == pytest.approx(100.0) and s["ahead"] == pytest.approx(1.0)
    assert (s["wait0"], s["ready0"], s["fresh0"], s["resumed0"]) == (60.0, 30, 12, 2)
    assert (s["wait1"], s["fresh1"]) == (50.0, 8)
    with pytest.raises(SystemExit, match="too few requests"):
        body_wait.summary(rows[:10], seconds=warm + 1.0)  # no PUT after the warm-up


@pytest.mark.parametrize(
    "argv, flag",
    [(["--clients", "1,x"], "--clients"), (["--clients", "0"], "--clients"), (["--seconds", "3"], "--seconds")],
)
def test_bad_arguments_are_usage_errors(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        body_wait.main(argv)
    assert exit_.value.code == 2
    assert flag in capsys.readouterr().err
