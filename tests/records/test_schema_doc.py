"""docs/records.md documents every table the writers produce, column for column, with the writers' types.

The document's `## NAME.parquet` sections each hold a table `| column | type | unit | meaning |`;
they are parsed here and checked against `sim.records.TABLES`, the schemas the writers use,
so a table added to `TABLES` fails here until it is documented, and a column renamed, added
or retyped fails until the document says so.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from sim.records import TABLES
from sim.records.schema import CATEGORY

DOC = Path(__file__).parents[2] / "docs" / "records.md"
SECTION = re.compile(r"^## (\w+)\.parquet\s*$")


def doc_type(t: pa.DataType) -> str:
    """The name a type has in the document: `category` for a dictionary of strings, else Arrow's (double: float64)."""
    return "category" if t == CATEGORY else "float64" if t == pa.float64() else str(t)


def documented() -> dict[str, list[tuple[str, str, str, str]]]:
    """table -> its rows (column, type, unit, meaning) as the document lists them."""
    tables: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in DOC.read_text().splitlines():
        if m := SECTION.match(line):
            current = m.group(1)
            tables[current] = []
        elif line.startswith("## "):
            current = None
        elif current and line.startswith("|") and not line.startswith(("| column", "|---")):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            assert len(cells) == 4, f"{DOC.name}, {current}: {line!r} should have 4 cells"
            tables[current].append((cells[0], cells[1], cells[2], cells[3]))
    return tables


def test_every_table_and_column_is_documented_with_its_type() -> None:
    doc = documented()
    assert set(doc) == set(TABLES), "docs/records.md sections vs sim.records.TABLES"
    for name, schema in TABLES.items():
        written = [(f.name, doc_type(f.type)) for f in schema]
        described = [(column, typ) for column, typ, _, _ in doc[name]]
        assert described == written, f"{name}.parquet: the document's columns and types vs the writer's schema"


def test_every_column_has_a_meaning_and_units_match_the_names() -> None:
    for name, rows in documented().items():
        for column, _, unit, meaning in rows:
            assert len(meaning) > 10, f"{name}.{column}: say what it means"
            if column.endswith("_ms"):
                assert unit == "ms", f"{name}.{column}: unit"
            if column.endswith("_s"):
                assert unit == "s", f"{name}.{column}: unit"
