"""Service-level objectives: `p99 of poll < 200 ms`, `error rate < 0.1%`, parsed and checked against summary.json.

An SLO is one line a capacity planner would write on a whiteboard:

- `pNN [of ENDPOINT] OP NUMBER UNIT`: a latency quantile (p50, p90, p95, p99, p99.9 or
  p99_9, max, mean) in `ms` or `s`;
- `error rate [of ENDPOINT] OP NUMBER[%]`: the share of failed requests, as a percentage or a
  fraction.

- `pNN dispatch latency OP NUMBER UNIT`: a quantile of command dispatch (a command enqueued by
  the operator until its agent's poll first carries it; summary.json's `dispatch`);
- `stuck tasks OP COUNT`: tasks left in flight (RUNNING, SYNCING, ABORTING, DELETING) at the
  end of the run (summary.json's `tasks.stuck`); `==` is allowed here, as `stuck tasks == 0`.

OP is one of `<`, `<=`, `>`, `>=`. Without `of ENDPOINT` the SLO is about all requests.
ENDPOINT is named as the records name it (`GET /v1/sms/sources/{source_id}/command`), by its
name in `sim.model.intents.ENDPOINTS` (`poll`), or by its path template alone when only one
method serves it. A bad expression is one `SloError` naming the part that is wrong.

This module is a leaf (the route table only), so `sim.scenario` validates its `slo:` list
with it. `check` evaluates a list of objectives into rows for a pass/fail table.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sim.model.intents import ENDPOINTS

__all__ = ["Slo", "SloError", "SloResult", "check", "evaluate", "parse_slo"]

# The summary's quantile keys (sim.records.QUANTILES, plus the mean), by the names people write.
_STATS = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p99_9", "p99_9": "p99_9"}
_STATS |= {"max": "max", "mean": "mean"}
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
    "==": operator.eq,
}
_DISPATCH = re.compile(r"^(?P<stat>p\S+|max|mean) dispatch(?: latency)?$")
_UNITS_MS = {"ms": 1.0, "s": 1000.0}
_SHAPE = re.compile(
    r"^\s*(?P<metric>.+?)(?:\s+of\s+(?P<endpoint>.+?))?\s*"
    r"(?P<op><=|>=|<|>|==|=)\s*(?P<limit>\S+?)\s*(?P<unit>[a-z%]*)\s*$",
    re.IGNORECASE,
)


class SloError(ValueError):
    """An SLO expression that cannot be read; the message names the bad part."""


@dataclass(frozen=True)
class Slo:
    """One parsed objective. `stat` is a summary.json latency key, "error_rate" or "stuck"; `endpoint`
    None is all requests. `dispatch` marks a quantile of command dispatch rather than of requests.

    `limit` is in the summary's units: milliseconds for latencies, a fraction for error rates, a count
    for stuck tasks.
    """

    text: str
    stat: str
    endpoint: str | None  # "METHOD /template", as summary.json keys its endpoints
    op: str
    limit: float
    dispatch: bool = False

    @property
    def is_latency(self) -> bool:
        """A request-latency objective (what the knee and the queueing theory are about)."""
        return self.stat not in ("error_rate", "stuck") and not self.dispatch

    @property
    def upper(self) -> bool:
        """True for an upper limit (`<`, `<=`): smaller values are better."""
        return self.op.startswith("<")

    def passes(self, value: float) -> bool:
        """Whether `value` meets the objective; NaN (nothing measured) never does."""
        return not math.isnan(value) and _OPS[self.op](value, self.limit)

    def value(self, summary: Mapping[str, Any]) -> float:
        """The objective's metric in a run's summary.json mapping; NaN when the run has none of it."""
        if self.stat == "stuck":
            stuck = summary.get("tasks", {}).get("stuck")
            return math.nan if stuck is None else float(stuck)
        if self.dispatch:
            raw = summary.get("dispatch", {}).get("enqueue_to_deliver_ms", {}).get(self.stat)
            return math.nan if raw is None else float(raw)
        if self.endpoint is None:
            block = summary.get("requests")
        else:
            block = summary.get("endpoints", {}).get(self.endpoint)
        if not block:
            return math.nan
        if self.stat == "error_rate":
            return float(block.get("error_rate", math.nan)) if block.get("count", 0) else math.nan
        raw = block.get("latency_ms", {}).get(self.stat)
        return math.nan if raw is None else float(raw)

    def ratio(self, value: float) -> float:
        """How far `value` is from the limit as a ratio, 1 at the limit and above 1 when it fails.

        Used to combine several objectives (the worst ratio decides) and to interpolate where a
        sweep crosses the limit. NaN stays NaN.
        """
        if math.isnan(value):
            return math.nan
        good, bad = (value, self.limit) if self.upper else (self.limit, value)
        if bad == 0:
            return 0.0 if good == 0 else math.inf
        return good / bad

    def describe_endpoint(self) -> str:
        if self.stat == "stuck":
            return "tasks"
        if self.dispatch:
            return "command dispatch"
        return self.endpoint or "all requests"

    def show(self, value: float) -> str:
        """`value` in the objective's own units, for a table."""
        if math.isnan(value):
            return "not measured"
        if self.stat == "stuck":
            return f"{value:g}"
        if self.stat == "error_rate":
            return f"{value * 100:.4g}%"
        return f"{value:,.0f} ms" if value >= 100 else f"{value:.3g} ms"


@dataclass(frozen=True)
class SloResult:
    """One objective checked against a run: its value (NaN: not measured, which fails) and the verdict."""

    slo: Slo
    value: float
    passed: bool


def check(slos: list[Slo | str], summary: Mapping[str, Any]) -> list[SloResult]:
    """Every objective against a run's summary.json mapping, in the order given."""
    out = []
    for item in slos:
        slo = parse_slo(item) if isinstance(item, str) else item
        value = slo.value(summary)
        out.append(SloResult(slo, value, slo.passes(value)))
    return out


def evaluate(slo: Slo | str, summary: Mapping[str, Any]) -> tuple[float, bool]:
    """(value, passed) of an objective against a run's summary.json mapping."""
    parsed = parse_slo(slo) if isinstance(slo, str) else slo
    value = parsed.value(summary)
    return value, parsed.passes(value)


def parse_slo(text: str) -> Slo:
    """Read one SLO expression (see the module docstring), or raise SloError naming the bad part."""
    if not isinstance(text, str) or not text.strip():
        raise SloError("expected an SLO such as 'p99 of poll < 200 ms' or 'error rate < 0.1%', got an empty one")
    m = _SHAPE.match(text)
    if m is None:
        raise SloError(f"expected 'METRIC [of ENDPOINT] < LIMIT' (e.g. 'p99 of poll < 200 ms'), got {text!r}")
    metric = " ".join(m["metric"].lower().replace("_rate", " rate").split())
    if metric in ("stuck tasks", "stuck", "stuck_tasks"):
        return _stuck(text, m)
    if m["op"] in ("=", "=="):
        raise SloError(f"{text!r}: expected an operator <, <=, > or >=, got {m['op']!r}")
    endpoint = _endpoint(m["endpoint"], text) if m["endpoint"] else None
    try:
        number = float(m["limit"])
    except ValueError:
        raise SloError(f"{text!r}: expected a number as the limit, got {m['limit']!r}") from None
    if not math.isfinite(number) or number < 0:
        raise SloError(f"{text!r}: expected a finite, non-negative limit, got {m['limit']!r}")
    unit = m["unit"].lower()
    if metric == "error rate":
        if unit not in ("", "%"):
            raise SloError(
                f"{text!r}: an error rate is a percentage ('0.1%') or a fraction ('0.001'), got unit {unit!r}"
            )
        limit = number / 100 if unit == "%" else number
        if limit > 1:
            raise SloError(f"{text!r}: expected an error rate of at most 100%, got {m['limit']}{unit}")
        return Slo(text.strip(), "error_rate", endpoint, m["op"], limit)
    dispatch = _DISPATCH.match(metric)
    if dispatch is not None:
        if m["endpoint"]:
            raise SloError(f"{text!r}: dispatch latency is about commands, not an endpoint; drop 'of {m['endpoint']}'")
        metric = dispatch["stat"]
    if metric not in _STATS:
        known = ", ".join([*_STATS, "error rate", "pNN dispatch latency", "stuck tasks"])
        raise SloError(f"{text!r}: unknown metric {m['metric'].strip()!r}; expected one of: {known}")
    if unit not in _UNITS_MS:
        raise SloError(f"{text!r}: expected a latency unit ms or s after the limit, got {unit or 'none'!r}")
    return Slo(text.strip(), _STATS[metric], endpoint, m["op"], number * _UNITS_MS[unit], dispatch is not None)


def _stuck(text: str, m: re.Match[str]) -> Slo:
    """`stuck tasks OP COUNT`: a whole number, no unit, no endpoint; `==` (or `=`) allowed."""
    if m["endpoint"]:
        raise SloError(f"{text!r}: stuck tasks are about the run's tasks, not an endpoint; drop 'of {m['endpoint']}'")
    if m["unit"]:
        raise SloError(f"{text!r}: expected a count of tasks with no unit, got unit {m['unit']!r}")
    if not (m["limit"].isascii() and m["limit"].isdigit()):
        raise SloError(f"{text!r}: expected a whole number of tasks as the limit, got {m['limit']!r}")
    op = "==" if m["op"] in ("=", "==") else m["op"]
    return Slo(text.strip(), "stuck", None, op, float(int(m["limit"])))


def _endpoint(name: str, text: str) -> str:
    """ "METHOD /template" of an endpoint named by key, by method and template, or by a template alone."""
    name = " ".join(name.split())
    if name in ENDPOINTS:
        return " ".join(ENDPOINTS[name])
    routes = [" ".join(route) for route in ENDPOINTS.values()]
    if name.upper().split(" ", 1)[0] in {m for m, _ in ENDPOINTS.values()} and " " in name:
        method, template = name.split(" ", 1)
        candidate = f"{method.upper()} {template}"
        if candidate in routes:
            return candidate
    else:
        matches = [route for route in routes if route.split(" ", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise SloError(f"{text!r}: endpoint {name!r} is served by several methods; name one: {', '.join(matches)}")
    raise SloError(
        f"{text!r}: unknown endpoint {name!r}; expected a name ({', '.join(list(ENDPOINTS)[:4])}, ...) "
        "or 'METHOD /template' as in the records"
    )
