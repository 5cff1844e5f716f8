"""The scenarios that ship with smsload, and finding a scenario by path or by name.

The YAML files beside this module are package data: they are read through
`importlib.resources`, so `smsload sim quickstart` works from a checkout, an editable
install or a wheel alike. Every command that takes a scenario takes either a path to a YAML
file or the name of a shipped scenario (`quickstart`, or `quickstart.yaml`); a file that
exists wins, so a scenario of one's own is never shadowed by a shipped one.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.scenario import Scenario

_SUFFIX = ".yaml"


def shipped_names() -> list[str]:
    """The names of the shipped scenarios, sorted: what `find_scenario` accepts besides a path."""
    return sorted(
        entry.name.removesuffix(_SUFFIX) for entry in files(__name__).iterdir() if entry.name.endswith(_SUFFIX)
    )


def shipped_text(name: str) -> str:
    """The YAML text of the shipped scenario `name` (KeyError if there is none)."""
    if name not in shipped_names():
        raise KeyError(name)
    return files(__name__).joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def find_scenario(ref: str | Path) -> Scenario:
    """The scenario in the file `ref`, else the shipped scenario named `ref`.

    Neither: one `ScenarioError` that lists the shipped names, so a mistyped name is fixed
    from the message alone. The YAML is read and checked (`sim.scenario_yaml`) before the
    models are imported: a file that is not a scenario at all is refused at once.
    """
    from sim.scenario_yaml import ScenarioError, load_yaml, read_scenario_text  # PyYAML: not for `smsload --help`

    path = Path(ref)
    name = path.name.removesuffix(_SUFFIX) if path.parent == Path(".") else None
    if path.is_file() or (path.exists() and name not in shipped_names()):  # a directory: named as unreadable
        text, source = read_scenario_text(path), str(path)
    elif name in shipped_names():
        text, source = shipped_text(name), name
    else:
        shipped = ", ".join(shipped_names())
        problem = f"no such file, and no shipped scenario of that name (shipped: {shipped})"
        raise ScenarioError([("", problem)], str(ref))
    data = load_yaml(text, source)
    from sim.scenario import validate_scenario  # pydantic: only for a file that is YAML of a sane shape

    return validate_scenario(data, source)
