"""A small version of the knee rig: a limited server at two levels below its capacity and one above.

The reference server runs with `--store-latency-ms` (one worker blocked ~4 ms per store
transaction: ~220 requests/s) on core 1, Locust on core 0 (`benchmarks/knee/rig.py`). The
simulation is calibrated from the lowest level (the overload level serving as the capacity
probe); at the highest level below capacity it must give the throughput within 5 % and the
poll p95 within 25 %, and every level must show the server, not the generator, as the
bottleneck (generator CPU under half its core, its lag p95 under 5 ms, the server busy at
overload). Every figure leaves out the first 8 s: the arrival and the operator's task wave,
whose burst the real server drains later than the simulated one (`rig.SETTLE_S`).

The machine is shared. A level is measured once more, after the load average settles
(`rig.measure_clean`), when its generator fell behind (another user's work on the generator's
core), the hypervisor stole from the server's core (1% of it, less near the knee:
`rig.steal_limit`), or the load average reached 2.5 on the 2 cores (other users' work
competing with the server itself, which lifts its tail without the generator showing it); the
bottleneck evidence is then judged on the last attempt.
A knee level whose throughput or p95 misses is measured once more, independently (one short
level's tail moves from run to run). A second miss fails the test, unless the machine
measurably disturbed a level the comparison rests on (the calibration's two and the judged
one): then the judgment is skipped, naming that evidence, since a server robbed of its core is
not the server the model was calibrated on (60 to 190 ms/s of steal was seen here during full
suites). At saturation the server's busy fraction counts the steal too: its core was serving
or taken. Likewise, a level whose bottleneck evidence fails on its last attempt while the
machine still shows its hand (steal on the server's core or on all cores, the load average)
skips the test with that evidence; without such a sign it fails.
Only loopback traffic; every server started is stopped by its PID.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "knee"))

import rig  # noqa: E402

from sim.report.calibrate import BODY_PASSES, REQUEUE_AT, calibrate  # noqa: E402

ATTEMPTS = 2  # a level the machine disturbed is measured once more
BUSY_LOAD = 2.5  # a 1-minute load average this high on the 2 cores: other users disturbed the level
LEVEL_S = 26.0  # of which the first rig.WARMUP_S (8 s) are left out: the arrival and the task wave
NOMINAL_PER_S = 220.0  # 1 / (mean store latency 4.2 ms + ~0.3 ms of CPU): checked by the overload level


def machine_signs(level: rig.Level, load: float) -> list[str]:
    """The machine's signs on a level offering `load` x capacity (its steal limit, the load average)."""
    return rig.machine_signs(level, BUSY_LOAD, rig.steal_limit(load))


def measure(tmp: Path, name: str, load: float) -> tuple[rig.Level, list[str]]:
    """A level offering `load` x the nominal capacity, measured again (once) while the machine disturbs it."""
    scenario = rig.fleet(name, rig.agents_for(load * NOMINAL_PER_S), LEVEL_S)
    limit = rig.steal_limit(load)
    return rig.measure_clean(tmp, scenario, attempts=ATTEMPTS, busy_load=BUSY_LOAD, settle_s=20.0, stolen_ms_s=limit)


def judge_evidence(name: str, level: rig.Level, load: float, context: str = "") -> None:
    """Assert the server was the bottleneck; if not while the machine shows its hand, skip with it."""
    problems = level.bottleneck_is_server(saturated=load > 1)
    why = f"{name}: {'; '.join(problems)}{context}"
    if problems and (taken := machine_signs(level, load)):
        pytest.skip(f"not judged, the machine disturbed the last attempt too ({'; '.join(taken)}): {why}")
    assert not problems, why


@pytest.mark.slow
@pytest.mark.timeout(900)  # four levels of ~40 s, each measured up to twice, and the simulations
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the rig needs two cores: server and generator apart")
def test_the_calibrated_simulation_holds_up_to_the_knee(tmp_path: Path) -> None:
    levels, retried = {}, []
    for f in (0.3, 0.75, 1.3):
        levels[f], again = measure(tmp_path, f"level-{round(f * 100)}", f)
        retried += [f"{f:.0%} {why}" for why in again]
    # The lowest level fits the service and round trip; the overload level, as a probe, the
    # capacity: the number of workers and the server's time outside the handler.
    cal = calibrate(levels[0.3].run, probe=levels[1.3].run, after_s=rig.warmup_s(levels[0.3].scenario))
    assert cal.workers == 1, cal.workers_source
    # The time outside the handler: the probe's level, and per endpoint where two endpoints had 30
    # requests sent with nothing in flight (in 18 s at 30% the progress writes may not).
    outside = cal.outside_ms
    assert outside["default"] == cal.overhead_ms and min(outside.values()) >= 0, outside
    assert (cal.scenario.server.requeue_bodies, cal.scenario.server.requeue_at) == (BODY_PASSES, REQUEUE_AT)
    means = rig.service_means(cal.scenario)
    for f, level in levels.items():
        level.evidence(means)
        judge_evidence(f"{f:.0%}", level, f, f" (measured again before: {retried or 'never'})")
    over = levels[1.3].figures
    assert over["throughput"] < 0.95 * over["offered"] or over["busy"] > 0.85  # it did saturate
    # The tail of one 18 s level moves by 10-20 % from run to run (benchmarks/RESULTS.md, issue 9): a
    # level whose p95 misses is measured once more, independently, and the test judges that one.
    knee, misses = levels[0.75], []
    for attempt in range(2):
        predicted = rig.simulate(tmp_path, knee, cal.scenario, replications=3)
        measured = knee.figures
        throughput_ok = predicted["throughput"] == pytest.approx(measured["throughput"], rel=0.05)
        if throughput_ok and predicted["poll_p95"] == pytest.approx(measured["poll_p95"], rel=0.25):
            break
        misses.append(
            f"throughput predicted {predicted['throughput']:.1f}/s, measured {measured['throughput']:.1f}/s; "
            f"poll p95 predicted {predicted['poll_p95']:.1f} ms, measured {measured['poll_p95']:.1f} ms "
            f"(load average {knee.load_avg[0]:.1f}-{knee.load_avg[1]:.1f}, generator lag p95 "
            f"{measured['lag_p95']:.1f} ms, the server's threads waited {measured['server_wait_ms_s']:.0f} ms/s "
            f"for a core, {measured['steal_ms_s']:.0f} ms/s stolen)"
        )
        if attempt == 0:
            knee, again = measure(tmp_path, "level-75-again", 0.75)
            retried += [f"75% again {why}" for why in again]
            knee.evidence(means)
            judge_evidence("75% again", knee, 0.75)
    else:
        # Missed twice. Judged only if the machine left the server's core alone while the levels
        # the prediction rests on were measured: the calibration's two and the judged one.
        disturbed = {
            name: why
            for name, f, level in (("30%", 0.3, levels[0.3]), ("130%", 1.3, levels[1.3]), ("75%", 0.75, knee))
            if (why := machine_signs(level, f))
        }
        detail = f"at 75%, twice: {'; '.join(misses)} (measured again before: {retried or 'never'})"
        if disturbed:
            pytest.skip(f"not judged, the machine disturbed {disturbed}: {detail}")
        pytest.fail(detail)
