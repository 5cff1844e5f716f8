"""Scenario files as YAML: read, parsed and checked for shape before any field is validated.

A leaf of the scenario package (PyYAML only, no pydantic), so that a file that is not a
scenario at all (not YAML, a YAML bomb, 20,000 nested brackets, a megabyte of text) is
refused in milliseconds, before the models are even imported (`sim.scenarios.find_scenario`).
`ScenarioError` lives here for the same reason: every layer above raises it.

The loader reads YAML 1.2 numbers (`1e3` is a float), refuses duplicate keys, keys that are
lists or mappings, nesting past MAX_DEPTH and aliases that expand past MAX_NODES.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

Problem = tuple[str, str]


class ScenarioError(Exception):
    """Every problem found in a scenario, each `(dotted field path, message)`; "" is the file itself."""

    def __init__(self, problems: list[Problem], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{path or self.source or '<scenario>'}: {msg}" for path, msg in self.problems]


# A scenario is a few dozen fields: bounds far above that, and far below what hurts (a 9^9
# "billion laughs" alias bomb, 20,000 nested brackets that overflow the parser's recursion).
MAX_TEXT_CHARS = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 100_000  # after expanding aliases


def _too_deep(line: int) -> ScenarioError:
    return ScenarioError([("", f"nested more than {MAX_DEPTH} levels deep (line {line + 1})")])


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e3` as a number (YAML 1.2), refuses duplicate keys, and stops at MAX_DEPTH.

    The depth is checked as the scanner opens each level, before the parser recurses into it:
    PyYAML's scanner does work per open flow level at every token (quadratic in the depth), so
    20,000 nested `[` took seconds to reach the parser's RecursionError; here they stop
    at level MAX_DEPTH + 1, where `_check_shape` would.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # `[` or `{`
        if self.flow_level + len(self.indents) > MAX_DEPTH:
            raise _too_deep(self.line)
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:  # a block mapping or sequence one level further in
        if self.flow_level + len(self.indents) > MAX_DEPTH and self.indent < column:
            raise _too_deep(self.line)
        return bool(super().add_indent(column))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


# PyYAML follows YAML 1.1, where a float needs a dot: `1e3` would be the string "1e3".
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _check_shape(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past MAX_NODES, nested past MAX_DEPTH, or with a
    key that is not a plain scalar (a list or mapping as a key), before any of it is built."""
    sizes: dict[int, int] = {}  # expanded size per node (aliases share nodes: count each once)

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise _too_deep(node.start_mark.line)
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    raise ScenarioError([("", f"a key must be a plain name, not a list or mapping (line {line})")])
                total += 1 + size(value, depth + 1)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item, depth + 1)
                if total > MAX_NODES:
                    break
        if total > MAX_NODES:
            raise ScenarioError([("", f"expected at most {MAX_NODES:,} values once aliases are expanded")])
        sizes[id(node)] = total
        return total

    size(root, 0)


def _load_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        _check_shape(root)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def read_scenario_text(path: str | Path) -> str:
    """The text of a scenario file, or ScenarioError naming why it cannot be read."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([("", "no such file")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([("", f"cannot read the file: {exc}")], str(path)) from None


def load_yaml(text: str, source: str = "<string>") -> Any:
    """The data of a scenario's YAML text, or ScenarioError (syntax errors carry line and column)."""
    if len(text) > MAX_TEXT_CHARS:
        raise ScenarioError([("", f"expected at most {MAX_TEXT_CHARS:,} characters, got {len(text):,}")], source)
    try:
        return _load_yaml(text)
    except ScenarioError as exc:
        raise ScenarioError(exc.problems, source) from None
    except RecursionError:  # a nesting the scanner's depth check does not see (the parser recurses per level)
        raise ScenarioError([("", f"nested more than {MAX_DEPTH} levels deep")], source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ScenarioError([("", f"invalid YAML{where}: {exc.problem}")], source) from None
    except yaml.YAMLError as exc:  # one line: PyYAML's message spans several
        raise ScenarioError([("", f"invalid YAML: {' '.join(str(exc).split())}")], source) from None
