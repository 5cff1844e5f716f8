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

from sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

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
    from the message alone.
    """
    path = Path(ref)
    if path.is_file():
        return load_scenario(path)
    name = path.name.removesuffix(_SUFFIX) if path.parent == Path(".") else None
    if name in shipped_names():
        return parse_scenario(shipped_text(name), name)
    if path.exists():  # a directory, say: load_scenario names the problem
        return load_scenario(path)
    shipped = ", ".join(shipped_names())
    raise ScenarioError([("", f"no such file, and no shipped scenario of that name (shipped: {shipped})")], str(ref))
