"""`smsload demo`: load-test the reference server, calibrate the simulation from it, predict a 10x fleet.

The whole harness in one command, in five steps:

1. a load test of the shipped quickstart scenario (`run_load`, in this process: it starts
   the reference server and Locust as child processes and stops both, also on Ctrl-C);
2. calibration of the simulated server from that run (`sim.report.calibrate`);
3. a simulation of the same scenario with the calibrated server;
4. a simulation of a fleet ten times larger, the prediction a load generator on this
   machine could not measure;
5. a report page per run and the comparison of the simulation with the load test.

Everything goes under one directory (`runs/demo-TIMESTAMP`); the last lines printed are
the pages' paths and the poll endpoint's throughput, p50 and p95, predicted vs measured.
Ctrl-C leaves what was written (an interrupted run is marked incomplete) with the server
and Locust stopped.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.cli_support import UsageError, add_command

if TYPE_CHECKING:
    from sim.report.analysis import RunAnalysis
    from sim.scenario import Scenario

QUICKSTART = "quickstart"  # a shipped scenario (sim/scenarios), found wherever the package is installed
STEPS = 5


@dataclass(frozen=True)
class Plan:
    """How big the demo is: the measured fleet, how long each run lasts, and the report's resamples."""

    agents: int
    load_s: float  # wall-clock seconds of the load test, and virtual seconds of the same-size simulation
    scale: int  # the predicted fleet is `scale` times the measured one
    big_s: float  # virtual seconds of the large simulation
    resamples: int  # bootstrap resamples behind every interval on the pages


# 2,000 agents polling every 5 s (400 polls/s) keep one granian worker and one Locust process
# on a shared 2-core machine well inside their capacity: no failures, no generator lag trend.
FULL = Plan(agents=2000, load_s=60.0, scale=10, big_s=60.0, resamples=1000)
QUICK = Plan(agents=200, load_s=10.0, scale=10, big_s=10.0, resamples=200)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "demo",
        help="load-test the reference server, calibrate the simulation, predict a 10x fleet, write reports",
        description="The whole harness on the quickstart scenario: load-test the reference server, calibrate "
        "the simulated server from it, simulate the same fleet and one ten times larger, and write a "
        "report page per run and the comparison of simulation and load test. Prints where the pages are "
        "and the poll endpoint predicted vs measured.",
        examples=[
            "smsload demo                       # about two minutes; everything in runs/demo-TIMESTAMP",
            "smsload demo --quick --out runs/d  # about 25 s",
        ],
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a small demo, under 30 s: {QUICK.agents} agents, a {QUICK.load_s:g} s load test",
    )
    p.add_argument("--out", type=Path, help="directory for everything the demo writes (default: runs/demo-TIMESTAMP)")
    p.set_defaults(func=run_demo)


def _step(n: int, text: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:4.0f} s] {n}/{STEPS} {text}", flush=True)


def _warm_imports() -> None:
    """Import what steps 2-5 need while the load test runs: this process only waits for its
    children then, and the imports (pandas, matplotlib, SimPy) take seconds on a busy machine."""
    import importlib

    for name in ("sim.report.calibrate_cli", "sim.des.run", "sim.report.html", "sim.report.compare"):
        importlib.import_module(name)


def shortened(scenario: Scenario, duration_s: float) -> Scenario:
    """The scenario lasting `duration_s`, its task waves and arrival ramp squeezed in proportion.

    The quickstart starts tasks at 5 s and 15 s; a 10 s run must start them before it ends
    (the scenario's own rule), and in the same proportion keeps the same story.
    """
    from sim.scenario import Ramp, TaskWaves

    factor = min(1.0, duration_s / scenario.duration_s)
    fields: dict[str, Any] = {}
    if isinstance(scenario.operator.tasks, TaskWaves):
        fields["operator.tasks.waves"] = [
            {"at_s": w.at_s * factor, "count": w.count} for w in scenario.operator.tasks.waves
        ]
    if isinstance(scenario.fleet.arrival, Ramp):
        fields["fleet.arrival.duration_s"] = scenario.fleet.arrival.duration_s * factor
    return scenario.with_overrides(duration_s=duration_s, fields=fields)


def _load_test(scenario: Scenario, out: Path) -> None:
    """The load test against the reference server started for it; its summary table goes to a file.

    In this process rather than as a child: `run_load` imports no Locust (Locust's gevent
    patching stays in its own processes), handles Ctrl-C itself and stops its server and
    Locust by their PIDs. Its progress lines go to stderr; the table would crowd the demo's
    own summary.
    """
    from rich.console import Console

    from loadtests.run import LoadError, run_load
    from sim.records import load_run
    from sim.report_text import print_summary

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        run_load(scenario, out, progress=say)
    except LoadError as exc:
        raise UsageError(str(exc)) from None
    with open(out.parent / "load-summary.txt", "w", encoding="utf-8") as summary:
        print_summary(load_run(out), Console(file=summary, width=130))


def _report_page(run_dir: Path, resamples: int) -> tuple[Path, RunAnalysis]:
    """Analyse a run and write its report page (in a worker process); the page and the analysis back."""
    from sim.report.analysis import analyze_run
    from sim.report.html import write_report

    analysis = analyze_run(run_dir, n_boot=resamples)
    return write_report(analysis), analysis


def _ignore_sigint() -> None:
    # Ctrl-C is the parent's to handle: it stops handing out pages and waits for those under way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Inline(Executor):
    """Where fork is not available: each page is written when it is asked for."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 (handed to whoever asks for the result)
            future.set_exception(exc)
        return future


def _page_writer() -> Executor:
    """Two forked processes that write each run's report page as soon as the run exists.

    Rendering the figures is most of the demo's time after the load test; forked workers
    start with everything imported and render beside the simulations instead of after them.
    """
    if "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(
            max_workers=2, mp_context=multiprocessing.get_context("fork"), initializer=_ignore_sigint
        )
    return _Inline()


def run_demo(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or Path("runs") / f"demo-{stamp}"
    t0 = time.perf_counter()
    try:
        return _run(plan, out, t0)
    except KeyboardInterrupt:
        print(f"smsload demo: interrupted; {out} holds what was written so far", file=sys.stderr)
        return 130


def _run(plan: Plan, out: Path, t0: float) -> int:
    from loadtests.run import LoadFailed
    from sim.scenarios import find_scenario

    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    base = shortened(find_scenario(QUICKSTART).with_overrides(agents=plan.agents), plan.load_s)
    load_dir, sim_dir, big_dir = out / "load", out / "sim", out / f"sim-{plan.scale}x"

    _step(
        1,
        f"load test: {plan.agents:,} agents for {plan.load_s:g} s against the reference server "
        f"(Locust; progress below, summary in {out / 'load-summary.txt'})",
        t0,
    )
    warm = threading.Thread(target=_warm_imports, name="warm-imports", daemon=True)
    warm.start()
    try:
        _load_test(base, load_dir)
    except LoadFailed as exc:
        print(f"smsload demo: the load test failed: {exc}", file=sys.stderr)
        return 1
    warm.join()  # before forking: a thread importing modules could hold an import lock in the child

    writer = _page_writer()
    try:
        pages = {load_dir: writer.submit(_report_page, load_dir, plan.resamples)}
        from sim.report.calibrate import CalibrationError, calibrate
        from sim.report.calibrate_cli import to_yaml

        _step(2, f"calibrating the simulated server from the load test -> {out / 'calibrated.yaml'}", t0)
        try:
            cal = calibrate(load_dir, base)
        except CalibrationError as exc:  # e.g. a load test whose requests all failed
            print(f"smsload demo: cannot calibrate from the load test: {exc}", file=sys.stderr)
            return 1
        (out / "calibrated.yaml").write_text(to_yaml(cal), encoding="utf-8")

        from sim.des.run import run_des

        _step(
            3,
            f"simulating the same scenario with the calibrated server ({plan.agents:,} agents, {plan.load_s:g} s)",
            t0,
        )
        run_des(cal.scenario, sim_dir)
        pages[sim_dir] = writer.submit(_report_page, sim_dir, plan.resamples)
        big = shortened(cal.scenario.with_overrides(agents=plan.agents * plan.scale), plan.big_s)
        _step(4, f"simulating a {plan.scale}x fleet ({plan.agents * plan.scale:,} agents, {plan.big_s:g} s)", t0)
        run_des(big, big_dir)
        pages[big_dir] = writer.submit(_report_page, big_dir, plan.resamples)

        from sim.report.compare import SHOWN, compare
        from sim.report.html import render_compare

        _step(5, "comparing the simulation with the load test and writing the report pages", t0)
        (load_page, load_a), (sim_page, sim_a) = pages[load_dir].result(), pages[sim_dir].result()
        # A = the simulation, B = the load test, as `smsload compare SIM_RUN LOAD_RUN`: changes read
        # "measured against predicted".
        comparison = compare(sim_a, load_a, n_boot=plan.resamples)
        compare_page = out / "compare.html"
        compare_page.write_text(render_compare(comparison, SHOWN), encoding="utf-8")
        big_page, big_a = pages[big_dir].result()
    finally:  # on Ctrl-C or an error: no new pages, and the ones under way finish (seconds)
        writer.shutdown(wait=True, cancel_futures=True)

    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s; everything is in {out}")
    for label, path in (
        ("load test report", load_page),
        ("simulation report", sim_page),
        (f"{plan.scale}x fleet report", big_page),
        ("comparison", compare_page),
        ("calibrated scenario", out / "calibrated.yaml"),
    ):
        print(f"  {label:<22} {path}")
    print()
    from sim.demo_summary import summary_lines

    for line in summary_lines(load_a, sim_a, big_a, plan.scale):
        print(line)
    return 0
