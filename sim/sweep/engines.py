"""The simulation engines a sweep point can run on, imported only when a point runs.

Every engine has the signature of `sim.des.run.run_des`: `(scenario, out, *, progress=None)
-> Path`, writing a run directory whose summary.json has the same shape. The compiled engine
(`sim.fast`) may be missing from an installation, or lack its compiler; asking for it then is
one clear error, and the SimPy engine still works.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENGINES: dict[str, str] = {"simpy": "sim.des.run:run_des", "fast": "sim.fast.run:run_fast"}

Engine = Callable[..., Path]


class EngineError(RuntimeError):
    """An engine that is unknown or cannot be imported here."""


def load_engine(name: str) -> Engine:
    """The run function of engine `name` (EngineError if unknown or not importable)."""
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; expected one of: {', '.join(ENGINES)}")
    module_name, _, attr = ENGINES[name].partition(":")
    try:
        module: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        package = module_name.rsplit(".", 1)[0]
        if exc.name is not None and (module_name.startswith(exc.name + ".") or exc.name.startswith(package)):
            raise EngineError(f"engine {name!r} is not available: {package} is not in this installation") from None
        raise EngineError(f"engine {name!r} needs the package {exc.name!r}, which is not installed") from None
    run = getattr(module, attr, None)
    if not callable(run):
        raise EngineError(f"engine {name!r}: {ENGINES[name]} is not a function")
    return run
