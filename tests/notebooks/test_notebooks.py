"""The notebooks run top to bottom, on small runs, in a real Jupyter kernel (nbclient).

Two small runs of the quickstart are made once per session: a simulation and a load test
(the reference server and Locust as child processes, as `smsload load` runs them; Locust is
never imported into the test process). Each notebook reads its inputs from environment
variables (its first cell), which the kernel inherits. The kernel is the `python3` one of
this interpreter (ipykernel installs its spec into the venv; jupyter_client runs it with
this very Python), so a fresh `make test` venv needs nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from sim.des.run import run_des
from sim.records import COMMAND_SCHEMA, TASK_SCHEMA, RunDir, finish_run, histograms_from_requests, load_run
from sim.scenario import load_scenario

ROOT = Path(__file__).parents[2]
NOTEBOOKS = ROOT / "notebooks"
QUICKSTART = ROOT / "sim" / "scenarios" / "quickstart.yaml"
POLL = "GET /v1/sms/sources/{source_id}/command"
AGENTS, DURATION_S = 100, 16.0  # the quickstart's task waves (5 s, 15 s) still fall inside the run
CELL_TIMEOUT_S = 120


@pytest.fixture(scope="session")
def small_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("notebook-runs")
    scenario = load_scenario(QUICKSTART).with_overrides(agents=AGENTS, duration_s=DURATION_S)
    sim = run_des(scenario, base / "sim")
    env = {k: v for k, v in os.environ.items() if k != "SMS_AUTH_TOKEN"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-m", "sim.cli", "load", str(QUICKSTART), "--agents", str(AGENTS),
                           "--duration-s", str(DURATION_S), "--out", str(base / "load"), "--quiet"],
                          capture_output=True, text=True, env=env, cwd=base, timeout=240, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return {"sim": sim, "load": base / "load"}


def _execute(name: str) -> nbformat.NotebookNode:
    """Run the notebook in a fresh kernel started in notebooks/; a failing cell raises CellExecutionError."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return book


def _outputs(book: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [out for cell in book.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def _text(book: nbformat.NotebookNode) -> str:
    parts = []
    for out in _outputs(book):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        data = out.get("data", {})
        parts += [data.get("text/plain", ""), data.get("text/html", "")]
    return "\n".join(parts)


def _images(book: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in _outputs(book))


def test_notebooks_are_committed_without_outputs() -> None:
    books = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [b.name for b in books] == ["01-explore-a-run.ipynb", "02-simulation-vs-load-test.ipynb",
                                       "03-capacity-planning.ipynb"]
    for path in books:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_explore_a_run(small_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSLOAD_RUN", str(small_runs["load"]))
    book = _execute("01-explore-a-run.ipynb")
    text = _text(book)
    assert POLL in text and "p99 ms [95% CI]" in text  # the summary table of the load test, with intervals
    assert "locust" in text
    assert _images(book) >= 6  # throughput, percentiles, CDF, tasks by state, dispatch, generator


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_explore_a_histogram_run(small_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with latency_hist.parquet and no request rows (the compiled engine's kind) reads the same way."""
    rows = load_run(small_runs["sim"])
    run = RunDir(tmp_path / "hist", load_scenario(QUICKSTART), "fast")
    run.write_histograms(histograms_from_requests(rows.requests, 1.0, run_id=run.run_id, executor="fast"))
    finish_run(run, complete=True, duration_s=float(rows.manifest["duration_s"]), wall_s=0.1,
               tasks=TASK_SCHEMA.empty_table(), commands=COMMAND_SCHEMA.empty_table(),
               server_tables="not modelled by the fast engine")
    monkeypatch.setenv("SMSLOAD_RUN", str(tmp_path / "hist"))
    text = _text(_execute("01-explore-a-run.ipynb"))
    assert POLL in text and "p99 ms [95% CI]" in text and f"{len(rows.requests):,} requests" in text
    assert "Latencies come from histograms" in text


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_simulation_vs_load_test(small_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSLOAD_SIM_RUN", str(small_runs["sim"]))
    monkeypatch.setenv("SMSLOAD_LOAD_RUN", str(small_runs["load"]))
    book = _execute("02-simulation-vs-load-test.ipynb")
    text = _text(book)
    assert "simulated" in text and "measured" in text and "significant" in text
    assert "throughput" in text and POLL in text
    assert _images(book) == 3  # the three overlays


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_capacity_planning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMSLOAD_QUICK", "1")
    monkeypatch.setenv("SMSLOAD_SWEEP_OUT", str(tmp_path))
    book = _execute("03-capacity-planning.ipynb")
    text = _text(book)
    assert "Erlang C (M/M/1): the largest fleet meeting it is" in text
    assert "simulation: the largest fleet of the sweep meeting it is" in text
    assert len(list(tmp_path.glob("agents-*/manifest.json"))) == 4  # the quick sweep's four fleets
    assert _images(book) == 1
