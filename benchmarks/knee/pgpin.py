"""Pin the PostgreSQL backends that serve the knee rig's reference server to the server's cores.

A PostgreSQL backend is a process of its own, forked by the postmaster, on any core: left
alone it runs on the generator's core as often as on the server's, and the generator's lag
then grows with the server's store traffic (benchmarks/RESULTS.md, the first PostgreSQL
table). The rig names its connections (`application_name` in the store URL, unique per run);
`BackendPinner` finds their backends in `pg_stat_activity` by that name and moves each with
`os.sched_setaffinity(pid, cpus)`: only those, never the postmaster or another session's.
That needs the right to set another user's process affinity (root, or CAP_SYS_NICE); without
it the pinner records why, once, and the level's evidence says "not pinned".
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

PIN_EVERY_S = 0.5  # the server opens its connection on its first request, and again after a fork


def application_name(url: str) -> str | None:
    """The `application_name` a PostgreSQL URL gives its connections, if any."""
    names = parse_qs(urlsplit(url).query).get("application_name")
    return names[0] if names else None


class BackendPinner(threading.Thread):
    """Every PIN_EVERY_S until stopped: the backends named `name` not yet pinned, onto `cpus`."""

    def __init__(self, admin_url: str, name: str, cpus: set[int]) -> None:
        super().__init__(daemon=True)
        self.admin_url, self.name, self.cpus = admin_url, name, cpus
        self.pinned: dict[int, list[int]] = {}  # backend pid -> its cores after pinning
        self.error = ""  # why a backend could not be pinned (the first reason), else empty
        self.done = threading.Event()

    def run(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as db:
                while not self.done.is_set() and not self.error:
                    self._pin(db)
                    self.done.wait(PIN_EVERY_S)
                self._pin(db)
        except psycopg.Error as exc:
            self.error = self.error or f"cannot read pg_stat_activity: {str(exc).strip().splitlines()[0]}"

    def _pin(self, db: Any) -> None:
        rows = db.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()",
            (self.name,),
        ).fetchall()
        for (pid,) in rows:
            if pid in self.pinned or self.error:
                continue
            try:
                os.sched_setaffinity(pid, self.cpus)
                self.pinned[pid] = sorted(os.sched_getaffinity(pid))
            except ProcessLookupError:
                continue  # the connection closed meanwhile
            except OSError as exc:
                self.error = (
                    f"cannot pin PostgreSQL backend {pid} to cores {sorted(self.cpus)}: {exc.strerror or exc} "
                    "(needs root or CAP_SYS_NICE)"
                )

    def stop(self) -> str:
        """Stop; one line for the evidence: what was pinned, or why not."""
        self.done.set()
        self.join(10)
        if self.error:
            return f"NOT pinned: {self.error}"
        if not self.pinned:
            return "NOT pinned: no backend of the server's connections seen"
        cores = sorted({tuple(c) for c in self.pinned.values()})
        return f"{len(self.pinned)} backend(s) pinned to cores {', '.join(map(str, cores))}"


def cpus_of(server_args: tuple[str, ...]) -> set[int] | None:
    """The cores `--cpus LIST` gives the server, if it has the option (`sim.server.rig.parse_cpus`)."""
    from sim.server.rig import parse_cpus

    args = list(server_args)
    return parse_cpus(args[args.index("--cpus") + 1]) if "--cpus" in args[:-1] else None


__all__ = ["BackendPinner", "application_name", "cpus_of"]
