"""`smsload load`: run the agent fleet of a scenario as a Locust load test and write its run directory.

Without --host the reference server is started for the run (`smsload serve`, SQLite inside
the run directory, a generated token, a free loopback port) and stopped afterwards by its
PID; its store then gives the run's task and command tables. With --host the load goes to
that server, and only there. Locust runs headless for the scenario's duration, as one
process or, with --workers N, as a master and N workers on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sim.cli import UsageError
from sim.scenario import Scenario, ScenarioError, load_scenario

TOKEN_ENV = "SMS_AUTH_TOKEN"
_STARTUP_S = 90.0  # on top of the duration: Locust, workers and the final merge


def register(sub: Any) -> None:
    p = sub.add_parser(
        "load",
        help="load-test a server with the scenario's agent fleet (Locust) and write a run directory",
        description="Run SCENARIO's agents and operator as Locust users over real HTTP, against the reference "
        "server started for the run or against --host. Writes a run directory with the simulation's "
        "schema (manifest.json, requests.parquet, tasks.parquet, commands.parquet, summary.json) "
        "plus generator.parquet, and prints a summary.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument("--host", help="base URL of the server to load (default: start the reference server on loopback)")
    p.add_argument("--out", type=Path, help="run directory to write (default: runs/NAME-locust-TIMESTAMP)")
    p.add_argument("--workers", type=int, default=0, help="Locust worker processes (default 0: one process)")
    p.add_argument("--duration-s", type=float, help="override duration_s (wall-clock seconds)")
    p.add_argument("--agents", type=int, help="override fleet.agents")
    p.add_argument("--token", help=f"X-Auth-Token for --host (default ${TOKEN_ENV}); never written anywhere")
    p.add_argument("--quiet", action="store_true", help="no progress lines and no summary table")
    p.set_defaults(func=_main)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_host(url: str) -> str:
    """A base URL to load: http(s)://host[:port][/prefix], without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"--host: expected http://HOST[:PORT] or https://..., got {url!r}")
    return url.rstrip("/")


def probe(host: str, token: str) -> None:
    """One authenticated GET, so an unreachable server or a refused token is one clear line."""
    import httpx

    try:
        response = httpx.get(
            f"{host}/v3/sources",
            params={"limit": 1},
            headers={"X-Auth-Token": token},
            timeout=5.0,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        raise UsageError(f"--host {host}: no answer within 5 s") from None
    except httpx.TransportError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--host {host}: cannot reach the server ({reason})") from None
    if response.status_code in (401, 403):
        raise UsageError(f"--host {host}: the server refused the token (HTTP {response.status_code})")


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run the way Ctrl-C does; both handlers are restored afterwards."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _ignore_interrupts() -> None:
    """While stopping (bounded: every wait has a timeout and ends in SIGKILL), a second Ctrl-C
    must not cut the cleanup short and leave Locust or the server running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _resolve(args: argparse.Namespace) -> tuple[Scenario, Path, str | None, str]:
    for flag, value in (("--agents", args.agents), ("--duration-s", args.duration_s)):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if not 0 <= args.workers <= 64:
        raise UsageError(f"--workers: expected 0..64, got {args.workers}")
    try:
        scenario = load_scenario(args.scenario).with_overrides(agents=args.agents, duration_s=args.duration_s)
    except ScenarioError as exc:
        raise UsageError(str(exc).replace("\n", "; ")) from None
    from loadtests.rundir import default_out

    out = args.out or default_out(scenario)
    if (out / "manifest.json").exists():
        raise UsageError(f"{out} already holds a run; choose another --out")
    token = args.token or os.environ.get(TOKEN_ENV, "")
    host = check_host(args.host) if args.host else None
    if host is not None:
        if not token:
            raise UsageError(f"--host needs a token: --token or ${TOKEN_ENV}")
        probe(host, token)
    return scenario, out, host, token or secrets.token_urlsafe(24)


def _main(args: argparse.Namespace) -> int:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    from loadtests.processes import LocustProcesses, child_env, locust_args
    from loadtests.rundir import is_finished
    from sim.server.process import ServerStartError, run_server

    scenario, out, host, token = _resolve(args)
    out.mkdir(parents=True, exist_ok=True)
    db = None if host else f"sqlite:///{(out / 'server.sqlite3').resolve()}"
    if host:
        _say(f"smsload load: target {host} (an external server: tasks.parquet and commands.parquet stay empty)")
    # The server and Locust read the token from the environment: it is on no command line.
    os.environ[TOKEN_ENV] = token
    echo = None if args.quiet else _say
    interrupted, code = False, None
    try:
        with _signals_as_interrupt():
            server = (
                run_server(db, [], out / "server.log", liveness=scenario.server.liveness)
                if db
                else contextlib.nullcontext(None)
            )
            with server as running:
                target = running.base_url if running is not None else host
                if running is not None:
                    _say(f"smsload load: reference server on {target} (pid {running.pid}), store in {out}")
                locust = LocustProcesses(out / "locust.log", echo).start(
                    locust_args(
                        scenario=args.scenario,
                        host=target,
                        out=out,
                        db=db,
                        agents=args.agents,
                        duration_s=args.duration_s,
                    ),
                    child_env(token),
                    args.workers,
                )
                try:
                    code = locust.wait(scenario.duration_s + _STARTUP_S)
                    if code is None:
                        _say("smsload load: Locust did not finish in time; stopping it")
                        locust.interrupt()
                        code = locust.wait(30.0)
                except KeyboardInterrupt:
                    interrupted = True
                    _ignore_interrupts()
                    _say("smsload load: interrupted; stopping the users and writing the run directory")
                    locust.interrupt()
                    code = locust.wait(30.0)
                finally:
                    locust.stop()
    except KeyboardInterrupt:
        interrupted = True
    except ServerStartError as exc:
        raise UsageError(f"the reference server did not start: {exc}") from None
    finally:
        _ignore_interrupts()
        if not is_finished(out):  # Locust was killed, or never got to start: what arrived, marked incomplete
            _fallback_finish(out, scenario, db, target_of(out, host))
    if interrupted:
        _say(f"interrupted: {out} holds the run so far, marked incomplete")
        return 130
    if code not in (0, 1) or not _complete(out):  # 1: Locust saw failed requests, which the run shows
        _say(f"smsload load: error: Locust exited with code {code} and the run is incomplete; see {out / 'locust.log'}")
        return 1
    print(out)
    if not args.quiet:
        from rich.console import Console

        from sim.records import load_run
        from sim.report_text import print_summary

        print_summary(load_run(out), Console(width=max(Console().width, 130)))
    return 0


def _complete(out: Path) -> bool:
    try:
        return json.loads((out / "manifest.json").read_text()).get("complete") is True
    except (OSError, ValueError):
        return False


def target_of(out: Path, host: str | None) -> str | None:
    try:
        return json.loads((out / "manifest.json").read_text()).get("target") or host
    except (OSError, ValueError):
        return host


def _fallback_finish(out: Path, scenario: Scenario, db: str | None, target: str | None) -> None:
    from loadtests.rundir import finish_run, reopen_run

    run = reopen_run(out, scenario, {"target": target, "store": db})
    t0 = float(run.manifest.get("t0_epoch") or time.time())
    finish_run(run, complete=False, t0=t0, duration_s=max(0.0, time.time() - t0), store_url=db, extra={})
