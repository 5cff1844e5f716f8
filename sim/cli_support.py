"""What the `smsload` subcommands share: the user's-error exception, scenarios from arguments, progress.

A leaf: it imports none of the subcommands and nothing imports the dispatcher `sim.cli`
but the console script, so a subcommand module can be imported (and tested) on its own.
A subcommand raises `UsageError` for anything the user can fix; the dispatcher prints it
as one line and exits with code 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sim.scenarios import find_scenario, shipped_names

if TYPE_CHECKING:  # rich and pydantic are imported when a command runs: `smsload --help` needs neither
    from rich.console import Console
    from rich.progress import Progress

    from sim.scenario import Scenario

SCENARIO_HELP = f"scenario YAML file, or the name of a shipped scenario ({', '.join(shipped_names())})"


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def add_command(sub: Any, name: str, *, help: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """A subcommand's parser whose --help ends with its examples, laid out as written.

    `description` is prose (paragraphs separated by a blank line, wrapped here; a literal % is
    just %), `examples` are command lines, each with an optional `# comment`. Every
    subcommand is made with this, so every --help looks alike and has examples.
    """
    paragraphs = [textwrap.fill(" ".join(p.split()), 88) for p in description.strip().split("\n\n")]
    return sub.add_parser(
        name,
        help=help,
        description="\n\n".join(paragraphs),
        epilog="examples:\n" + "\n".join(f"  {line}" for line in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def check_positive(**flags: float | None) -> None:
    """Each given value (`duration_s=...` for the flag --duration-s) must be above zero."""
    for name, value in flags.items():
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")


def say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def scenario_from_args(
    ref: str | Path,
    *,
    agents: int | None = None,
    duration_s: float | None = None,
    seed: int | None = None,
    say: Callable[[str], None] = say_on_stderr,
) -> Scenario:
    """The scenario named on the command line (a path or a shipped name) with the command line's overrides.

    A `duration_s` shorter than the scenario's runs the part of it that fits
    (`sim.scenario_shorten`); what was dropped is said in one line through `say`.
    """
    from sim.scenario_shorten import shorten
    from sim.scenario_yaml import ScenarioError

    check_positive(agents=agents, duration_s=duration_s)
    try:
        scenario = find_scenario(ref).with_overrides(agents=agents, seed=seed)
        if duration_s is None:
            return scenario
        shortened, notes = shorten(scenario, duration_s)
    except ScenarioError as exc:
        raise UsageError("; ".join(exc.lines())) from None
    if notes:
        say(f"shortened to {duration_s:g} s: " + "; ".join(notes))
    return shortened


def refuse_existing_run(out: Path) -> None:
    """A run directory is written once: another run into it would mix two runs' rows."""
    if (out / "manifest.json").exists():
        raise UsageError(f"{out} already holds a run; choose another --out")


def print_run_summary(out: Path) -> None:
    """The run's per-endpoint table on stdout, as wide as it needs."""
    from rich.console import Console

    from sim.records import load_run  # pandas: imported when a run has finished, not at every start
    from sim.report_text import print_summary

    print_summary(load_run(out), Console(width=max(Console().width, 130)))


class LazyProgress:
    """A rich progress bar that appears only once a run has taken more than a couple of seconds.

    Call it as `progress(done, total)` (the shape `run_des` reports progress in); `close()`
    removes the bar. Short runs never show one, so their output stays a clean summary.
    """

    def __init__(self, console: Console, label: str, after_s: float = 2.0, unit: str = "virtual s") -> None:
        self.console, self.label, self.after_s, self.unit = console, label, after_s, unit
        self.t0 = time.perf_counter()
        self.bar: Progress | None = None
        self.task: Any = None

    def __call__(self, now: float, total: float) -> None:
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.after_s:
                return
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} " + self.unit),
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
