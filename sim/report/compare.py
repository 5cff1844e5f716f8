"""Two runs side by side: per-endpoint differences of B against A, their significance, and limits.

Works across executors (simulation vs load test, run vs run): endpoints are matched by
"METHOD /template". For each endpoint in either run, and for all requests (`ALL`):

- latency percentiles (p50 .. max): the relative change qB / qA - 1 of the exact quantiles
  (the numbers of each run's report and summary.json); its 95 % interval is the percentile
  interval of the ratio of the two runs' independent histogram-bootstrap resamples, each
  centred on its run's exact quantile (`sim.report.hist`), so it carries the sampling noise
  of both runs;
- throughput: the relative change of the rates; exact conditional interval of the ratio of
  two Poisson rates (`sim.report.intervals.rate_ratio_interval`);
- error rate: the absolute change pB - pA with Newcombe's interval, and the relative change.

A difference is significant when its interval excludes zero and both runs have enough
requests of the endpoint: for a percentile, enough for a distribution-free interval of it
(`hist.min_samples`: 6 for p50, 368 for p99); for any metric, at least `TINY` (6, the p50's
minimum). A change measured on one request (a +957 % p50) is then shown with its sample
sizes and never called significant. Differences smaller than the histogram resolution
(about 1 %) are not resolved.

Limits (`--fail-on`) are `[ENDPOINT:]METRIC:LIMIT`, e.g. `p99:+10%` (any endpoint's p99 up
by more than 10 % fails), `throughput:-5%`, `error_rate:+0.01` (absolute),
`'GET /v1/sms/sources/{source_id}/command:p99:+10%'`. A positive limit fails on a change
above it, a negative one on a change below it. Without an endpoint a limit applies to every
endpoint present in both runs and to `ALL`. A breach counts whether or not it is
significant; the check says which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.records import QUANTILES
from sim.report import metrics as M
from sim.report.analysis import RunAnalysis
from sim.report.hist import LEVEL, N_BOOT, bootstrap, centred, combine, hist_quantiles, interval, min_samples
from sim.report.intervals import proportion_difference_interval, rate_ratio_interval

METRICS = (*QUANTILES, "throughput", "error_rate")
SHOWN = ("p50", "p95", "p99", "throughput", "error_rate")  # the side-by-side columns by default
TINY = int(min_samples(0.5))  # fewer requests of an endpoint in a run than this: too few to compare at all
_LIMIT = re.compile(r"^([+-])(\d+(?:\.\d*)?|\.\d+)(%?)$")


class LimitError(ValueError):
    """A `--fail-on` spec that cannot be read; the message names it and says what was expected."""


@dataclass(frozen=True)
class Limit:
    """One `--fail-on` limit: endpoint (None: every endpoint and ALL), metric, signed limit."""

    spec: str
    endpoint: str | None
    metric: str
    limit: float  # a fraction (+0.10 for +10 %) when relative, else an absolute change
    relative: bool

    def breached(self, change: float) -> bool:
        return bool(change > self.limit) if self.limit >= 0 else bool(change < self.limit)


def parse_limit(spec: str) -> Limit:
    """Read `[ENDPOINT:]METRIC:LIMIT`; raise `LimitError` naming the spec and the problem."""
    parts = spec.strip().rsplit(":", 2)
    if len(parts) < 2:
        raise LimitError(f"--fail-on {spec!r}: expected [ENDPOINT:]METRIC:LIMIT, e.g. 'p99:+10%'")
    endpoint = parts[0].strip() if len(parts) == 3 else None
    metric, text = parts[-2].strip(), parts[-1].strip()
    if metric not in METRICS:
        raise LimitError(f"--fail-on {spec!r}: unknown metric {metric!r} (expected one of {', '.join(METRICS)})")
    if endpoint is not None and endpoint != M.ALL and not re.match(r"^[A-Z]+ /\S*$", endpoint):
        raise LimitError(
            f"--fail-on {spec!r}: endpoint {endpoint!r} should be 'METHOD /path/template', "
            "e.g. 'GET /v1/sms/sources/{source_id}/command', or ALL"
        )
    m = _LIMIT.match(text)
    if not m:
        raise LimitError(
            f"--fail-on {spec!r}: limit {text!r} should be a signed number, e.g. +10% or -5%"
            + (" or +0.01 (error_rate, absolute)" if metric == "error_rate" else "")
        )
    sign, number, percent = m.groups()
    value = float(number) * (-1 if sign == "-" else 1)
    if not percent and metric != "error_rate":
        raise LimitError(f"--fail-on {spec!r}: {metric} limits are relative: write {sign}{number}%")
    return Limit(spec, endpoint, metric, value / 100 if percent else value, bool(percent))


def _seed_b(a: RunAnalysis, b: RunAnalysis) -> int:
    # Two analyses with the same seed (a run and its copy) must still draw independent resamples.
    return b.seed if b.seed != a.seed else b.seed + 1


def compare_runs(a: RunAnalysis, b: RunAnalysis, *, n_boot: int = N_BOOT, level: float = LEVEL) -> pd.DataFrame:
    """One row per endpoint (and ALL) and metric: endpoint, metric, a, b, diff, rel, lo, hi, ci, n_a, n_b,
    enough, significant.

    `rel` is b / a - 1. `lo`/`hi` bound `rel` (ci == "rel") or, for error_rate, `diff` = b - a
    (ci == "diff"). NaN where an endpoint is missing from a run. `n_a`, `n_b`: the endpoint's
    requests in each run. `enough` is false when either run has fewer than `TINY` requests of
    the endpoint, or, for a percentile, fewer than a distribution-free interval needs
    (`hist.min_samples`: 368 for p99, never for max): such a difference is never called significant.
    """
    probs = np.array(list(QUANTILES.values()))
    ha, hb = a.latency_hist, b.latency_hist
    groups = {"a": (ha, combine(ha, M.ALL)), "b": (hb, combine(hb, M.ALL))}
    endpoints = sorted(set(ha.labels) | set(hb.labels)) + [M.ALL]
    rows = []

    def resamples(side: str, endpoint: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The run's exact quantiles of `endpoint` (from its report table) and bootstrap resamples centred on them."""
        h, total = groups[side]
        table = (a if side == "a" else b).endpoints
        if endpoint not in table.index:
            return np.full(len(probs), np.nan), np.full((n_boot, len(probs)), np.nan)
        point = table.loc[endpoint, list(QUANTILES)].to_numpy(dtype=np.float64)
        hg, g = (total, 0) if endpoint == M.ALL else (h, h.labels.index(endpoint))
        return point, centred(bootstrap(hg, g, probs, n_boot, seed), point, hist_quantiles(hg, g, probs))

    for endpoint in endpoints:
        qa, ra = resamples("a", endpoint, a.seed)
        qb, rb = resamples("b", endpoint, _seed_b(a, b))
        with np.errstate(all="ignore"):
            rel, (lo, hi) = qb / qa - 1, interval(rb / ra - 1, level)
            lo, hi = np.fmin(lo, rel), np.fmax(hi, rel)  # a skewed bootstrap's interval may miss its estimate
        ea = a.endpoints.loc[endpoint] if endpoint in a.endpoints.index else None
        eb = b.endpoints.loc[endpoint] if endpoint in b.endpoints.index else None
        na, nb = (int(e["count"]) if e is not None else 0 for e in (ea, eb))
        sized = min(na, nb) >= TINY
        for i, (name, q) in enumerate(QUANTILES.items()):
            enough = sized and min(na, nb) >= min_samples(q, level)
            rows.append((endpoint, name, qa[i], qb[i], qb[i] - qa[i], rel[i], lo[i], hi[i], "rel", na, nb, enough))
        ratio, r_lo, r_hi = rate_ratio_interval(na, a.duration_s, nb, b.duration_s, level)
        rows.append(
            (
                endpoint,
                "throughput",
                na / a.duration_s,
                nb / b.duration_s,
                nb / b.duration_s - na / a.duration_s,
                ratio - 1,
                r_lo - 1,
                r_hi - 1,
                "rel",
                na,
                nb,
                sized,
            )
        )
        errs_a, errs_b = (int(e["errors"]) if e is not None else 0 for e in (ea, eb))
        d, d_lo, d_hi = proportion_difference_interval(errs_a, na, errs_b, nb, level)
        pa, pb = (errs_a / na if na else np.nan), (errs_b / nb if nb else np.nan)
        rel_err = 0.0 if pa == 0 and pb == 0 else (np.inf if pa == 0 else pb / pa - 1)
        rows.append((endpoint, "error_rate", pa, pb, d, rel_err, d_lo, d_hi, "diff", na, nb, sized))
    columns = ["endpoint", "metric", "a", "b", "diff", "rel", "lo", "hi", "ci", "n_a", "n_b", "enough"]
    out = pd.DataFrame(rows, columns=columns)
    out["significant"] = out["enough"] & ((out["lo"] > 0) | (out["hi"] < 0))
    return out


def _significance(row: pd.Series) -> str:
    return "significant" if row["significant"] else "not significant" if row["enough"] else "too few requests"


def endpoint_scope(table: pd.DataFrame, limit: Limit, a: RunAnalysis, b: RunAnalysis) -> list[str]:
    """The endpoints a limit applies to; `LimitError` if it names an endpoint neither run has."""
    if limit.endpoint is not None:
        if limit.endpoint != M.ALL and limit.endpoint not in set(a.latency_hist.labels) | set(b.latency_hist.labels):
            known = ", ".join(sorted(set(a.latency_hist.labels) | set(b.latency_hist.labels)))
            raise LimitError(
                f"--fail-on {limit.spec!r}: no endpoint {limit.endpoint!r} in either run (they have: {known})"
            )
        return [limit.endpoint]
    both = set(a.latency_hist.labels) & set(b.latency_hist.labels)
    return [e for e in table["endpoint"].unique() if e in both or e == M.ALL]


def check_limits(table: pd.DataFrame, limits: list[Limit], a: RunAnalysis, b: RunAnalysis) -> pd.DataFrame:
    """One row per (limit, endpoint): spec, endpoint, metric, change, limit, breached, significant,
    significance, message.

    `significance` says it in words: "significant", "not significant", or "too few requests"
    (a percentile that neither run has enough requests to bound; see `compare_runs`).
    """
    rows = []
    indexed = table.set_index(["endpoint", "metric"])
    for limit in limits:
        for endpoint in endpoint_scope(table, limit, a, b):
            r = indexed.loc[(endpoint, limit.metric)]
            change = float(r["rel"] if limit.relative else r["diff"])
            if not np.isfinite(change) and not (np.isinf(change) and change > 0):
                rows.append(
                    (
                        limit.spec,
                        endpoint,
                        limit.metric,
                        change,
                        limit.limit,
                        True,
                        False,
                        "-",
                        f"FAIL: cannot check {limit.metric} of {endpoint}: it has no requests in run "
                        f"{'A' if np.isnan(r['a']) else 'B'}",
                    )
                )
                continue
            breached = limit.breached(change)
            unit = (lambda v: f"{v:+.1%}") if limit.relative else (lambda v: f"{v:+.4f}")
            sig = _significance(r)
            sig_text = sig if sig != "too few requests" else "significance not determined (too few requests)"
            ci = f"{r['lo']:+.1%}..{r['hi']:+.1%}" if r["ci"] == "rel" else f"{r['lo']:+.4f}..{r['hi']:+.4f}"
            verdict = "FAIL" if breached else "ok"
            rows.append(
                (
                    limit.spec,
                    endpoint,
                    limit.metric,
                    change,
                    limit.limit,
                    breached,
                    bool(r["significant"]),
                    sig,
                    f"{verdict}: {endpoint} {limit.metric} {unit(change)} (limit {unit(limit.limit)}), "
                    f"{sig_text} (95% CI of the {'change' if r['ci'] == 'rel' else 'difference'} {ci})",
                )
            )
    return pd.DataFrame(
        rows,
        columns=["spec", "endpoint", "metric", "change", "limit", "breached", "significant", "significance", "message"],
    )


@dataclass
class Comparison:
    """Two analysed runs, their side-by-side table (`compare_runs`) and the limit checks (`check_limits`)."""

    a: RunAnalysis
    b: RunAnalysis
    table: pd.DataFrame
    checks: pd.DataFrame
    limits: list[Limit]

    @property
    def failed(self) -> bool:
        return bool(self.checks["breached"].any()) if not self.checks.empty else False

    def labels(self) -> tuple[str, str]:
        return (f"A: {self.a.run_id} ({self.a.executor})", f"B: {self.b.run_id} ({self.b.executor})")


def compare(a: RunAnalysis, b: RunAnalysis, limits: list[Limit] | None = None, *, n_boot: int = N_BOOT) -> Comparison:
    """Compare two analysed runs and check the limits (raises `LimitError` for an endpoint neither run has)."""
    table = compare_runs(a, b, n_boot=n_boot)
    limits = list(limits or [])
    return Comparison(a, b, table, check_limits(table, limits, a, b), limits)
