"""`benchmarks/knee/bench_knee.py`: the issue's targets judged per level (`misses`), and its
arguments refused with a usage error before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "knee"))

import bench_knee  # noqa: E402

MEASURED = {
    "throughput": 100.0,
    "poll_p50": 10.0,
    "poll_p95": 20.0,
    "poll_p99": 40.0,
    "progress_p50": 10.0,
    "progress_p95": 20.0,
    "progress_p99": 40.0,
}


def _predicted(scale: dict[str, float], half: float = 0.05) -> dict[str, float]:
    """Each measured figure times its scale (1 where not given), with an interval of +- `half` of it."""
    out = {}
    for key, value in MEASURED.items():
        p = value * scale.get(key, 1.0)
        out.update({key: p, f"{key}_lo": p * (1 - half), f"{key}_hi": p * (1 + half)})
    return out


def test_below_the_knee_each_figure_has_its_own_tolerance() -> None:
    inside = {"throughput": 1.029, "poll_p50": 0.91, "poll_p95": 1.14, "poll_p99": 0.76, "progress_p99": 1.24}
    assert bench_knee.misses(0.9, MEASURED, _predicted(inside)) == []
    outside = {"throughput": 0.96, "poll_p50": 1.11, "poll_p95": 0.84, "progress_p99": 1.3}
    assert bench_knee.misses(0.8, MEASURED, _predicted(outside)) == [
        "throughput -4%",
        "poll_p50 +11%",
        "poll_p95 -16%",
        "progress_p99 +30%",
    ]


def test_at_saturation_the_throughput_within_5_percent_and_the_p95_inside_the_interval() -> None:
    # p50 and p99 are not judged there; the p95 by the simulated interval, not by its error.
    assert bench_knee.misses(1.2, MEASURED, _predicted({"throughput": 1.049, "poll_p50": 2.0}, half=0.1)) == []
    missed = bench_knee.misses(1.0, MEASURED, _predicted({"throughput": 0.94, "progress_p95": 1.2}, half=0.1))
    assert missed == ["throughput -6%", "progress_p95 20.0 outside [21.6, 26.4]"]


def test_a_level_between_90_and_100_percent_is_not_judged() -> None:
    assert bench_knee.misses(0.95, MEASURED, _predicted({"poll_p50": 2.0})) == []


def test_the_measured_mean_and_its_range() -> None:
    predicted = _predicted({"poll_p50": 1.1})
    text = bench_knee.fmt([9.0, 11.0], predicted, "poll_p50")
    assert text == "10.0 (9.0-11.0) / 11.0 [10.4, 11.6] (+10%)"
    assert bench_knee.fmt([10.0], predicted, "poll_p50") == "10.0 / 11.0 [10.4, 11.6] (+10%)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repeats", "0"], "--repeats: expected 1 or more, got 0"),
        (["--replications", "1"], "--replications: expected 2 or more"),
        (["--levels", "0.5,eighty"], "--levels: expected fractions of capacity separated by commas"),
        (["--levels", "0.5,-1"], "--levels: expected fractions of capacity in (0, 5]"),
    ],
)
def test_bad_arguments_are_refused_before_any_load(args: list[str], message: str, tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "knee" / "bench_knee.py"
    cmd = [sys.executable, str(script), "--workdir", str(tmp_path / "w"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "w").exists()  # nothing measured, nothing created


def test_a_run_whose_round_trip_outside_the_server_was_long_is_named() -> None:
    import math

    import rig

    def level(name: str, rtt: float) -> rig.Level:
        scenario = rig.fleet(name, 10, 20.0)
        return rig.Level(name, scenario, Path(name), (8.0, 20.0), (0.1, 0.1), {"rtt_p50": rtt})

    runs = [level("a", 0.70), level("b", 0.66), level("c", 0.78), level("slow", 1.19), level("saturated", math.nan)]
    slow = rig.slow_round_trips(runs)
    assert [(lv.name, why) for lv, why in slow] == [("slow", "round trip p50 1.19 ms, 1.6x the runs' median 0.74 ms")]
    assert rig.slow_round_trips(runs[:1] + runs[3:]) == []  # two known round trips: no median to judge by
    assert rig.slow_round_trips([level("a", 0.70), level("b", 0.90), level("c", 0.80)]) == []  # within 1.25x


def test_by_round_each_round_is_calibrated_with_the_probes_around_it() -> None:
    lows, probes = ["low-r1", "low-r2", "low-r3"], ["probe", "probe-r2", "probe-r3", "probe-end"]
    assert bench_knee.calibration_pairs(lows, probes, "round") == [
        [("low-r1", "probe"), ("low-r1", "probe-r2")],
        [("low-r2", "probe-r2"), ("low-r2", "probe-r3")],
        [("low-r3", "probe-r3"), ("low-r3", "probe-end")],
    ]
    # Otherwise one set, every round predicted from it, with the first probe.
    assert bench_knee.calibration_pairs(lows, probes, "each") == [[(low, "probe") for low in lows]]
    assert bench_knee.calibration_pairs(lows, probes, "first") == [[("low-r1", "probe")]]
    with pytest.raises(ValueError, match="3 rounds need 4 probes"):
        bench_knee.calibration_pairs(lows, probes[:2], "round")
