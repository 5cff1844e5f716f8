"""`smsload sim`: run the simulation of a scenario and print where its run directory is."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from sim.cli import UsageError
from sim.scenario import ScenarioError, load_scenario


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sim",
        help="simulate a scenario (SimPy) and write a run directory",
        description="Run the discrete-event simulation of SCENARIO: agents and the operator against a "
        "queueing model of the server, in virtual time. Writes a run directory (manifest.json, "
        "requests.parquet, tasks.parquet, commands.parquet, summary.json) and prints a summary.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--out", type=Path, help="run directory to write (default: runs/NAME-des-TIMESTAMP)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--duration-s", type=float, help="override duration_s (virtual seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=_main)


class _LazyProgress:
    """A rich progress bar that appears only once a run has taken more than a couple of seconds."""

    def __init__(self, console: Console, label: str, after_s: float = 2.0) -> None:
        self.console, self.label, self.after_s = console, label, after_s
        self.t0 = time.perf_counter()
        self.bar: Progress | None = None
        self.task: Any = None

    def __call__(self, now: float, total: float) -> None:
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.after_s:
                return
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} virtual s"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=now)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _main(args: argparse.Namespace) -> int:
    from sim.des.run import run_des
    from sim.records import default_out, load_run
    from sim.report_text import print_summary

    for flag, value in (("--agents", args.agents), ("--duration-s", args.duration_s)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    try:
        scenario = load_scenario(args.scenario).with_overrides(
            agents=args.agents, duration_s=args.duration_s, seed=args.seed
        )
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    out = args.out or default_out(scenario, "des")
    if (out / "manifest.json").exists():
        raise UsageError(f"{out} already holds a run; choose another --out")
    console = Console(stderr=True)
    bar = None if args.quiet else _LazyProgress(console, f"simulating {scenario.name}")
    try:
        run_des(scenario, out, progress=bar)
    except KeyboardInterrupt:
        console.print(f"interrupted: {out} holds the run so far, marked incomplete")
        return 130
    finally:
        if bar is not None:
            bar.close()
    print(out)
    if not args.quiet:
        print_summary(load_run(out), Console(width=max(Console().width, 130)))
    return 0
