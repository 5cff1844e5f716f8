"""Latency histograms: requests counted per endpoint, outcome, time bin and latency bucket instead of one row each.

Why: an engine simulating 10^5..10^6 polling agents (`sim/fast`) makes billions of requests;
it cannot write a row per request. It writes instead `latency_hist.parquet` (`HIST_SCHEMA`):
per endpoint, outcome (status, error) and time bin, a log-bucketed latency histogram with
EXACT counts. Counts, throughput and error rates read off it are exact; a latency quantile
read off it is the midpoint of the bucket that holds the exact order statistic, so it is
within a stated relative error of the exact one.

The buckets (`LogBins`): bucket 0 holds every latency below `lo` (zero included); bucket
k >= 1 holds [lo (1+r)^(k-1), lo (1+r)^k); the last bucket also holds everything above `hi`.
A bucket stands for its geometric midpoint (bucket 0 for 0), which is within a relative error
of sqrt(1+r) - 1 of any value in it (`LogBins.rel_error`: 0.499 % at the default r = 1 %), or
within `lo` in absolute terms below `lo`. Defaults: r = 1 %, lo = 1e-3 ms, hi = 1e8 ms (1 µs
to a day; 2,548 buckets). The same bins count the report's bootstrap histograms
(`sim.report.hist`).

The table is sparse (only nonzero cells): one row per (group, time bin, bucket) with
`run_id`, `executor`, `endpoint` (the path template, as in requests.parquet), `method`,
`status` (0: no response), `ok` (the request rows' rule, `sim.records.rows.ok_status`),
`error` ("no error" as the request table writes it: `error_cell`), `t_bin_s` (the bin's start:
requests are binned by the time they were sent, `t_start_s` of a row), `bin_s`, `bucket`,
`latency_lo_ms` and `latency_hi_ms` (the bucket's bounds; the last bucket's upper bound is
infinite) and `count`. Its Parquet key-value metadata (key `smsload.latency_hist`, JSON) holds
the schema version, the bins' parameters, their relative error and `bin_s`.

`hist_table` builds it from the dense counts an engine accumulates; `histograms_from_requests`
builds the same table from request rows (to check a histogram run against the row run it
came from).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from sim.model.intents import ENDPOINTS
from sim.records.rows import ok_status
from sim.records.schema import HIST_SCHEMA

HIST_FILE = "latency_hist.parquet"
HIST_SCHEMA_VERSION = 1
METADATA_KEY = b"smsload.latency_hist"


@dataclass(frozen=True)
class LogBins:
    """Log-spaced latency buckets of relative width `rel_width` from `lo` to `hi` (ms), plus bucket 0 below `lo`."""

    rel_width: float = 0.01
    lo: float = 1e-3
    hi: float = 1e8
    n: int = field(init=False)

    def __post_init__(self) -> None:
        if not (self.rel_width > 0 and 0 < self.lo < self.hi):
            raise ValueError(f"LogBins needs rel_width > 0 and 0 < lo < hi, got {self.rel_width}, {self.lo}, {self.hi}")
        object.__setattr__(self, "n", int(math.ceil(math.log(self.hi / self.lo) / math.log1p(self.rel_width))) + 2)

    @property
    def rel_error(self) -> float:
        """The largest relative error of a bucket's midpoint against a value in it: sqrt(1 + r) - 1."""
        return math.sqrt(1.0 + self.rel_width) - 1.0

    def index(self, values: np.ndarray) -> np.ndarray:
        """The bucket of each value (int64); NaN gets -1 (callers drop it)."""
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor(np.log(v / self.lo) / math.log1p(self.rel_width)) + 1
        k = np.where(v < self.lo, 0, np.minimum(k, self.n - 1))
        return np.where(np.isnan(v), -1, k).astype(np.int64)

    def value(self, index: np.ndarray) -> np.ndarray:
        """The value a bucket stands for: its geometric midpoint (bucket 0: zero)."""
        k = np.asarray(index, dtype=np.float64)
        return np.where(k <= 0, 0.0, self.lo * np.power(1.0 + self.rel_width, k - 0.5))

    def lower(self, index: np.ndarray) -> np.ndarray:
        """The lower edge of a bucket (bucket 0: zero)."""
        k = np.asarray(index, dtype=np.float64)
        return np.where(k <= 0, 0.0, self.lo * np.power(1.0 + self.rel_width, k - 1.0))

    def upper(self, index: np.ndarray) -> np.ndarray:
        """The upper edge of a bucket (for CDFs: the share of values below this edge)."""
        k = np.asarray(index, dtype=np.float64)
        return self.lo * np.power(1.0 + self.rel_width, k)

    def metadata(self) -> dict[str, float | int]:
        """The parameters a reader needs to rebuild these bins, and their relative error."""
        return {
            "rel_width": self.rel_width,
            "lo_ms": self.lo,
            "hi_ms": self.hi,
            "n_buckets": self.n,
            "rel_error": self.rel_error,
        }


DEFAULT_BINS = LogBins()

#: How the request table writes "no error" (requests.parquet on main: the empty string).
#: `error_cell` is the one place histograms follow it; change both together.
NO_ERROR: str | None = None  # "none" is null in every table (docs/records.md)


def error_cell(error: str | None) -> str | None:
    """The `error` value of a histogram row: the error code, or the request table's "no error"."""
    return error if error else NO_ERROR


@dataclass(frozen=True)
class HistGroup:
    """One histogram group: an endpoint (a key of `sim.model.intents.ENDPOINTS`) and an outcome.

    `status` 0 is no response (timeout, refused); `error` is the SMS error code or transport
    failure, "" or None for none.
    """

    endpoint_name: str
    status: int
    error: str | None = ""

    def __post_init__(self) -> None:
        if self.endpoint_name not in ENDPOINTS:
            known = ", ".join(sorted(ENDPOINTS))
            raise ValueError(f"HistGroup: unknown endpoint {self.endpoint_name!r} (expected one of {known})")


def hist_metadata(bins: LogBins, bin_s: float) -> dict[str, Any]:
    """What latency_hist.parquet's metadata and the manifest's `latency_histograms` say about the table."""
    return {"schema_version": HIST_SCHEMA_VERSION, **bins.metadata(), "bin_s": float(bin_s)}


def bins_from_metadata(metadata: Mapping[bytes, bytes] | None) -> tuple[LogBins, float]:
    """(the bins, bin_s) of a histogram table from its Parquet key-value metadata; ValueError if absent."""
    if not metadata or METADATA_KEY not in metadata:
        raise ValueError(f"no {METADATA_KEY.decode()} metadata: not a latency histogram table")
    meta = json.loads(metadata[METADATA_KEY])
    return LogBins(float(meta["rel_width"]), float(meta["lo_ms"]), float(meta["hi_ms"])), float(meta["bin_s"])


def _table(
    run_id: str,
    executor: str,
    method: np.ndarray,
    endpoint: np.ndarray,
    status: np.ndarray,
    error: np.ndarray,
    t_bin: np.ndarray,
    bucket: np.ndarray,
    count: np.ndarray,
    bin_s: float,
    bins: LogBins,
) -> pa.Table:
    """The sparse table from one entry per nonzero cell (the two builders share it)."""
    n = len(count)
    last = bucket == bins.n - 1
    status = np.asarray(status, dtype=np.int32)
    columns = {
        "run_id": pa.array([run_id] * n, pa.string()),
        "executor": pa.array([executor] * n, pa.string()),
        "endpoint": pa.array(endpoint, pa.string(), from_pandas=True),
        "method": pa.array(method, pa.string(), from_pandas=True),
        "status": pa.array(status, pa.int32()),
        "ok": pa.array(ok_status(status), pa.bool_()),
        "error": pa.array(error, pa.string(), from_pandas=True),
        "t_bin_s": pa.array(np.asarray(t_bin, dtype=np.float64) * bin_s, pa.float64()),
        "bin_s": pa.array(np.full(n, float(bin_s)), pa.float64()),
        "bucket": pa.array(np.asarray(bucket, dtype=np.int32), pa.int32()),
        "latency_lo_ms": pa.array(bins.lower(bucket), pa.float64()),
        "latency_hi_ms": pa.array(np.where(last, np.inf, bins.upper(bucket)), pa.float64()),
        "count": pa.array(np.asarray(count, dtype=np.int64), pa.int64()),
    }
    meta = {METADATA_KEY: json.dumps(hist_metadata(bins, bin_s), sort_keys=True).encode()}
    return pa.Table.from_pydict(columns, schema=HIST_SCHEMA.with_metadata(meta))


def hist_table(
    run_id: str,
    executor: str,
    groups: Sequence[HistGroup],
    bin_s: float,
    counts: np.ndarray,
    bins: LogBins = DEFAULT_BINS,
) -> pa.Table:
    """The histogram table of dense `counts` (int, shape (len(groups), time bins, bins.n)): nonzero cells only.

    counts[g, t, k] is how many requests of group g, sent in [t bin_s, (t+1) bin_s), had a
    latency in bucket k. Raises ValueError for a shape, type or sign an engine should not produce.
    """
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.shape[0] != len(groups) or counts.shape[2] != bins.n:
        raise ValueError(
            f"hist_table: counts must have shape (groups={len(groups)}, time bins, buckets={bins.n}), "
            f"got {counts.shape}"
        )
    if not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"hist_table: counts must be integers (exact counts), got {counts.dtype}")
    if not bin_s > 0:
        raise ValueError(f"hist_table: bin_s must be positive, got {bin_s}")
    g, t, k = np.nonzero(counts)
    if counts.size and counts.min() < 0:
        raise ValueError("hist_table: counts must not be negative")
    methods = np.array([ENDPOINTS[x.endpoint_name][0] for x in groups] or [""], dtype=object)
    templates = np.array([ENDPOINTS[x.endpoint_name][1] for x in groups] or [""], dtype=object)
    errors = np.array([error_cell(x.error) for x in groups] or [""], dtype=object)
    status = np.array([x.status for x in groups] or [0], dtype=np.int32)
    return _table(run_id, executor, methods[g], templates[g], status[g], errors[g], t, k, counts[g, t, k], bin_s, bins)


def histograms_from_requests(
    requests: pd.DataFrame,
    bin_s: float,
    bins: LogBins = DEFAULT_BINS,
    *,
    run_id: str | None = None,
    executor: str | None = None,
) -> pa.Table:
    """The histogram table of request rows (`REQUEST_SCHEMA` as a DataFrame), binned by `t_start_s`.

    `run_id` and `executor` default to the rows' own. Rows without a latency (NaN; no executor
    writes them today) cannot be bucketed and are left out.
    """
    if not bin_s > 0:
        raise ValueError(f"histograms_from_requests: bin_s must be positive, got {bin_s}")
    first = requests.iloc[0] if len(requests) else None
    run_id = run_id if run_id is not None else (str(first["run_id"]) if first is not None else "")
    executor = executor if executor is not None else (str(first["executor"]) if first is not None else "")
    frame = pd.DataFrame(
        {
            "method": requests["method"].astype(object),
            "endpoint": requests["endpoint"].astype(object),
            "status": requests["status"].to_numpy(dtype=np.int32),
            "error": [error_cell(e if isinstance(e, str) else None) for e in requests["error"]],
            "t_bin": np.floor(requests["t_start_s"].to_numpy(dtype=np.float64) / bin_s).astype(np.int64),
            "bucket": bins.index(requests["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)),
        }
    )
    frame = frame[frame["bucket"] >= 0]
    cells = frame.groupby(list(frame.columns), sort=True, dropna=False).size().reset_index(name="count")
    return _table(
        run_id,
        executor,
        cells["method"].to_numpy(dtype=object),
        cells["endpoint"].to_numpy(dtype=object),
        cells["status"].to_numpy(dtype=np.int32),
        cells["error"].to_numpy(dtype=object),
        cells["t_bin"].to_numpy(dtype=np.int64),
        cells["bucket"].to_numpy(dtype=np.int64),
        cells["count"].to_numpy(dtype=np.int64),
        bin_s,
        bins,
    )
