"""The grid of a sweep: `--vary PATH=SPEC` specs, and the points (values x replications) they make.

A spec is a list `v1,v2,...` or a range `lo:hi:logN` / `lo:hi:linN` (N points, geometric or
even spacing). A field that holds an integer in the scenario (`fleet.agents`,
`server.workers`) keeps integer values: a range is rounded and repeated values dropped. Short
names: `agents` is `fleet.agents`, `poll_interval_s` is `agent.poll_interval_s`, `workers` is
`server.workers`; any other dotted path of the scenario is accepted as it is.

Every point is validated as a whole Scenario before anything runs (a poll interval below the
scenario's jitter is caught here, not an hour into the sweep). Replication r of a point runs
with seed `scenario.seed + r`, so a sweep is deterministic and a re-run finds the same points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.scenario import Scenario, ScenarioError

ALIASES = {"agents": "fleet.agents", "poll_interval_s": "agent.poll_interval_s", "workers": "server.workers"}
AGENTS = "fleet.agents"


class GridError(ValueError):
    """A `--vary` spec or a grid point that cannot run; the message names the spec and the problem."""


@dataclass(frozen=True)
class Vary:
    """One varied field: its dotted path in the scenario and the values it takes."""

    path: str
    values: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "values": list(self.values)}


@dataclass(frozen=True)
class Point:
    """One run of the sweep: the varied values, the replication and the scenario they make."""

    values: tuple[tuple[str, Any], ...]  # (path, value), in the order of the --vary options
    replication: int
    scenario: Scenario = field(compare=False, repr=False)

    @property
    def seed(self) -> int:
        return self.scenario.seed

    @property
    def key(self) -> str:
        """The point's name: its run directory under OUT/points/ and its identity in sweep.parquet."""
        return ",".join([*(f"{path}={_text(v)}" for path, v in self.values), f"rep={self.replication}"])


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _current(base: Scenario, path: str) -> Any:
    node: Any = base.to_dict()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _number(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise GridError(f"--vary {spec}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise GridError(f"--vary {spec}: expected a finite number, got {text!r}")
    return value


def _scalar(text: str) -> Any:
    """A listed value as the YAML file would read it: an int, else a float, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_vary(spec: str, base: Scenario) -> Vary:
    """Read one `PATH=SPEC` into a Vary; integer fields of `base` keep integer values."""
    path, sep, values_text = spec.partition("=")
    path = ALIASES.get(path.strip(), path.strip())
    if not sep or not path or not values_text.strip():
        raise GridError(f"--vary {spec}: expected PATH=v1,v2,... or PATH=lo:hi:logN (e.g. agents=1e4:1e6:log8)")
    current = _current(base, path)
    integer = isinstance(current, int) and not isinstance(current, bool)
    parts = values_text.split(":")
    if len(parts) == 3:
        lo, hi = _number(parts[0], spec), _number(parts[1], spec)
        kind, n_text = parts[2][:3].lower(), parts[2][3:]
        if kind not in ("log", "lin") or not n_text.isdigit() or int(n_text) < 1:
            raise GridError(
                f"--vary {spec}: expected a range lo:hi:logN or lo:hi:linN with N >= 1, got {values_text!r}"
            )
        if kind == "log" and (lo <= 0 or hi <= 0):
            raise GridError(f"--vary {spec}: a log range needs positive ends, got {lo:g} and {hi:g}")
        n = int(n_text)
        raw: list[Any] = list((np.geomspace if kind == "log" else np.linspace)(lo, hi, n)) if n > 1 else [lo]
        raw = [float(v) for v in raw]
    elif len(parts) == 1:
        raw = [_scalar(v.strip()) for v in values_text.split(",")]
        if any(v == "" for v in raw):
            raise GridError(f"--vary {spec}: an empty value in the list {values_text!r}")
    else:
        raise GridError(f"--vary {spec}: expected a list v1,v2,... or a range lo:hi:logN, got {values_text!r}")
    if integer:
        raw = [round(v) if isinstance(v, float) else v for v in raw]
    values = tuple(dict.fromkeys(raw))  # drop repeats (a rounded log range), keep the order
    return Vary(path, values)


def grid_points(
    base: Scenario, varies: Sequence[Vary], replications: int, duration_s: float | None = None
) -> list[Point]:
    """Every combination of the varied values, times `replications`, each validated (GridError if one fails)."""
    if replications < 1:
        raise GridError(f"--replications must be at least 1, got {replications}")
    paths = [v.path for v in varies]
    if len(set(paths)) != len(paths):
        raise GridError(f"a field is varied twice: {', '.join(p for p in paths if paths.count(p) > 1)}")
    points = []
    checked: dict[tuple[Any, ...], Scenario] = {}
    for combo in itertools.product(*(v.values for v in varies)):
        values = tuple(zip(paths, combo))
        try:
            checked[combo] = base.with_overrides(duration_s=duration_s, fields=dict(values))
        except ScenarioError as exc:
            where = ", ".join(f"{p}={_text(v)}" for p, v in values)
            raise GridError(f"the point {where} is not a valid scenario: {'; '.join(exc.lines())}") from None
        for r in range(replications):
            points.append(Point(values, r, checked[combo].with_overrides(seed=base.seed + r)))
    return points
