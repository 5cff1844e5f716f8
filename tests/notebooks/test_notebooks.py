"""The notebooks run top to bottom, on small runs, in a real Jupyter kernel (nbclient), from an installed package.

Two small runs of the quickstart are made once per session: a simulation and a load test
(the reference server and Locust as child processes, as `smsload load` runs them; Locust is
never imported into the test process).

As a user runs them: the package is installed from a wheel, not the checkout. `pip install
--no-deps --target DIR` builds and installs a copy of the project's sources (copied first, so
the build leaves nothing in the checkout) in about five seconds; the kernel gets DIR first on
its PYTHONPATH, so `import sim` finds the installed copy (the venv's editable install comes
after it on the import path; its dependencies still come from the venv), and runs in
notebooks/, where nothing of the checkout is importable. Each notebook then must not find
anything through `sim.__file__`, and a last cell checks where `sim` came from.

Inputs go in papermill's way: a cell with the values is inserted after the cell tagged
`parameters`. The kernel is the `python3` one of this interpreter (ipykernel installs its spec
into the venv), so a fresh `make test` venv needs nothing else.
"""

from __future__ import annotations

import os
import shutil
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
from sim.sweep.grid import parse_vary
from sim.sweep.runner import SweepSpec, run_sweep

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


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package installed (not editable) from a copy of the sources: the directory to put on PYTHONPATH."""
    base = tmp_path_factory.mktemp("installed")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("sim", "loadtests"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                           str(base / "site"), str(source)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (base / "site" / "sim" / "report" / "templates" / "report.html").is_file()  # package data too
    return base / "site"


def _execute(name: str, installed: Path, monkeypatch: pytest.MonkeyPatch, **parameters: Any) -> nbformat.NotebookNode:
    """Run the notebook from the installed package with `parameters`; a failing cell raises CellExecutionError."""
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, c in enumerate(book.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: one cell tagged 'parameters'"
    values = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    book.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(f"# injected parameters\n{values}"))
    book.cells.append(nbformat.v4.new_code_cell("import sim\nprint('sim imported from', sim.__file__)"))
    monkeypatch.setenv("PYTHONPATH", str(installed))
    NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    origin = book.cells[-1].outputs[0]["text"]
    assert f"sim imported from {installed}" in origin, origin  # the installed package, not the checkout
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
                # Inputs come from the parameters cell, and nothing is found through the package's location.
                assert "sim.__file__" not in cell.source and "os.environ" not in cell.source, path.name
        tags = [c.metadata.get("tags", []) for c in book.cells]
        assert sum("parameters" in t for t in tags) == 1, f"{path.name}: one cell tagged 'parameters'"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_explore_a_run(small_runs: dict[str, Path], installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = _execute("01-explore-a-run.ipynb", installed, monkeypatch, RUN=str(small_runs["load"]))
    text = _text(book)
    assert POLL in text and "p99 ms [95% CI]" in text  # the summary table of the load test, with intervals
    assert "locust" in text
    assert _images(book) >= 6  # throughput, percentiles, CDF, tasks by state, dispatch, generator


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_explore_a_histogram_run(
    small_runs: dict[str, Path], installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with latency_hist.parquet and no request rows (the compiled engine's kind) reads the same way."""
    rows = load_run(small_runs["sim"])
    run = RunDir(tmp_path / "hist", load_scenario(QUICKSTART), "fast")
    run.write_histograms(histograms_from_requests(rows.requests, 1.0, run_id=run.run_id, executor="fast"))
    finish_run(run, complete=True, duration_s=float(rows.manifest["duration_s"]), wall_s=0.1,
               tasks=TASK_SCHEMA.empty_table(), commands=COMMAND_SCHEMA.empty_table(),
               server_tables="not modelled by the fast engine")
    text = _text(_execute("01-explore-a-run.ipynb", installed, monkeypatch, RUN=str(tmp_path / "hist")))
    assert POLL in text and "p99 ms [95% CI]" in text and f"{len(rows.requests):,} requests" in text
    assert "Latencies come from histograms" in text


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_simulation_vs_load_test(small_runs: dict[str, Path], installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    book = _execute("02-simulation-vs-load-test.ipynb", installed, monkeypatch,
                    SIM_RUN=str(small_runs["sim"]), LOAD_RUN=str(small_runs["load"]))
    text = _text(book)
    assert "simulated" in text and "measured" in text and "significant" in text
    assert "throughput" in text and POLL in text
    assert _images(book) == 3  # the three overlays


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_capacity_planning(tmp_path: Path, installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook reads a sweep (here a small one of the compiled engine) and answers from it."""
    base = load_scenario(QUICKSTART).with_overrides(
        fields={
            "operator.tasks": {"kind": "waves", "waves": []},
            "fleet.arrival": {"kind": "ramp", "duration_s": 5},
            "duration_s": 60,
            "server.workers": 1,
            "server.service_ms.poll": {"dist": "exponential", "mean": 20.0},
            "slo": ["p99 of poll < 100 ms"],
        }
    )
    varies = (parse_vary("agents=20:200:log4", base),)
    run_sweep(SweepSpec(base, varies, replications=2, engine="fast", slo=base.slo), tmp_path / "s", jobs=1)
    book = _execute("03-capacity-planning.ipynb", installed, monkeypatch, SWEEP=str(tmp_path / "s"))
    text = _text(book)
    assert "8 runs, engine fast" in text and "p99 of poll < 100 ms" in text
    assert "max_agents" in text and "erlang_c_p99" in text
    assert "at most" in text
    assert _images(book) == 1  # the knee plot


@pytest.mark.slow
def test_the_defaults_find_the_newest_demo(small_runs: dict[str, Path], installed: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # As after `make demo` in a checkout: runs/demo-*/{sim,load}, the notebook opened in notebooks/.
    demo = tmp_path / "runs" / "demo-20260101-000000"
    for name in ("sim", "load"):
        shutil.copytree(small_runs[name], demo / name)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("PYTHONPATH", str(installed))
    for name, expected in (("01-explore-a-run.ipynb", ["../runs/demo-20260101-000000/load"]),
                           ("02-simulation-vs-load-test.ipynb", ["simulation: ../runs/demo-20260101-000000/sim",
                                                                 "load test:  ../runs/demo-20260101-000000/load"])):
        book = nbformat.read(NOTEBOOKS / name, as_version=4)
        tagged = next(i for i, c in enumerate(book.cells) if "parameters" in c.metadata.get("tags", []))
        book.cells = book.cells[: tagged + 2]  # the parameters as committed, and the cell that resolves them
        NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
        assert [line for line in _text(book).splitlines() if line] == expected
