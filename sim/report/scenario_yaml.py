"""A run's scenario shown as its author would have written the file, for the report page.

The manifest holds the resolved scenario (`Scenario.to_dict()`: every default filled in,
numbers as floats, a constant as `{dist: constant, value: 1.0}`). Printed as it is, a
scenario written `duration_s: 60` and `rtt_ms: 1` reads `60.0` and a two-line mapping; the
report prints integers as integers, a constant as its value and small mappings on one line.
"""

from __future__ import annotations

import math
from typing import Any

import yaml


class _ScenarioDumper(yaml.SafeDumper):
    """YAML as a scenario file is written: 60 not 60.0, small mappings on one line, nothing wrapped."""


def _represent_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
    if math.isfinite(value) and value.is_integer():
        return dumper.represent_int(int(value))
    return dumper.represent_float(value)


def _represent_dict(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.MappingNode:
    # A leaf mapping ({dist: lognormal, median: 1, sigma: 0.4}) on one line, as the shipped scenarios write them.
    leaf = len(value) <= 4 and all(not isinstance(v, (dict, list)) for v in value.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=leaf)


_ScenarioDumper.add_representer(float, _represent_float)
_ScenarioDumper.add_representer(dict, _represent_dict)


def _compact(node: Any) -> Any:
    """A constant distribution as its value (`rtt_ms: 1`, the way it is usually written; both mean the same)."""
    if isinstance(node, dict):
        if set(node) == {"dist", "value"} and node["dist"] == "constant":
            return node["value"]
        return {k: _compact(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_compact(v) for v in node]
    return node


def scenario_yaml(scenario: dict[str, Any]) -> str:
    """The run's resolved scenario (from its manifest) in the form a scenario file is written in."""
    return yaml.dump(_compact(scenario), Dumper=_ScenarioDumper, sort_keys=False, width=1000, allow_unicode=True)
