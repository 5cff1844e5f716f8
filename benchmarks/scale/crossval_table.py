"""The fast engine against SimPy on the cross-validation scenarios, as a table for RESULTS.md.

The same scenarios, replications and comparison as `tests/fast/test_crossval.py` (which
asserts the agreement); this prints the figures: per scenario, the mean over replications of
throughput and poll p50/p95/p99 for each engine, their relative difference, and the half
width of the 95 % interval of the difference (Welch).

    .venv/bin/python benchmarks/scale/crossval_table.py
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fast.test_crossval import crossvalidate, scenario  # noqa: E402

CASES = {
    "steady 0.5": scenario(0.5),
    "steady 0.8": scenario(0.8),
    "steady 0.95": scenario(0.95),
    "outage 60 s, exponential": scenario(
        0.5,
        duration_s=150.0,
        faults=({"kind": "outage", "start_s": 30, "duration_s": 60},),
        retry={"policy": "exponential", "base_s": 1, "cap_s": 16, "max_attempts": 6},
    ),
    "outage 60 s, full jitter": scenario(
        0.5,
        duration_s=150.0,
        faults=({"kind": "outage", "start_s": 30, "duration_s": 60},),
        retry={"policy": "exponential_full_jitter", "base_s": 1, "cap_s": 16, "max_attempts": 6},
    ),
}


def main() -> None:
    print("| scenario | metric | fast | SimPy | difference | 95% interval of the difference |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, s in CASES.items():
            fast, des = crossvalidate(s, 10.0, Path(tmp) / name.replace(" ", "_"))
            mf, md = fast.mean(axis=0), des.mean(axis=0)
            vf, vd = fast.var(axis=0, ddof=1) / len(fast), des.var(axis=0, ddof=1) / len(des)
            for i, metric in enumerate(["polls/s", "p50 ms", "p95 ms", "p99 ms"]):
                se = math.sqrt(vf[i] + vd[i])
                df = (vf[i] + vd[i]) ** 2 / (vf[i] ** 2 / (len(fast) - 1) + vd[i] ** 2 / (len(des) - 1) + 1e-300)
                half = st.t.ppf(0.975, max(df, 1.0)) * se
                print(
                    f"| {name} | {metric} | {mf[i]:.3f} | {md[i]:.3f} | {100 * (mf[i] / md[i] - 1):+.1f}% | "
                    f"+-{half:.3f} ({100 * half / md[i]:.1f}%) |"
                )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
