"""A run directory with a missing or truncated table: `report` and `compare` name it and exit 2.

Before, a finished run missing requests.parquet was read as a run without requests (a report
of nothing), and a table cut short surfaced as Arrow's message without the file's name.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sim.cli import main


def _copy(runs: dict[str, Path], tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    shutil.copytree(runs["sim"], dst)
    for page in ("report.html", "compare.html"):
        (dst / page).unlink(missing_ok=True)
    return dst


@pytest.mark.parametrize("table", ["requests.parquet", "tasks.parquet", "commands.parquet"])
def test_a_missing_table_is_named(runs: dict[str, Path], tmp_path: Path, table: str, capsys) -> None:
    run = _copy(runs, tmp_path, "missing")
    (run / table).unlink()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"{table} is missing" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["compare", str(runs["sim"]), str(run)]) == 2
    assert f"{table} is missing" in capsys.readouterr().err


@pytest.mark.parametrize("table", ["requests.parquet", "tasks.parquet"])
def test_a_truncated_table_is_named(runs: dict[str, Path], tmp_path: Path, table: str, capsys) -> None:
    run = _copy(runs, tmp_path, "cut")
    data = (run / table).read_bytes()
    (run / table).write_bytes(data[: len(data) // 2])
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert table in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_unfinished_run_may_lack_tables(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    import json

    run = _copy(runs, tmp_path, "unfinished")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(ended_at=None, complete=False)
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "commands.parquet").unlink()
    assert main(["report", str(run)]) == 0
