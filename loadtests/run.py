"""`run_load`: load-test a scenario's agent fleet with Locust and write its run directory.

The load test's counterpart of `sim.des.run.run_des`, and what `smsload load` and the demo
call. Without a host the reference server is started for the run (`smsload serve`, SQLite
inside the run directory, a free loopback port) and stopped afterwards by its PID; its export
API then gives the run's task and command tables (`loadtests.export`). With a host the load goes to that server, and
only there. Locust runs headless for the scenario's duration, as one process or as a master
and N workers on this machine (`loadtests.processes`).

A scenario's `faults:` are played by `loadtests.faults.FaultDriver` on the run's clock through
the server's fault admin endpoint (`sim.server.admin`): the embedded server gets an admin
token generated for the run, --host needs the one its server was started with.

The token is an argument, and so is an AK/SK pair (the agents then sign their requests as the
official SDK does; the embedded server accepts that pair). Both reach the server and Locust
in their own environments (on no command line, and never in this process's environment) and
are written nowhere. Ctrl-C or SIGTERM stops Locust in order and still leaves a readable run
directory, marked incomplete.

Beside Locust, a thread scrapes the target's `/metrics` every second into `server.parquet`
(`loadtests.scrape`). The embedded server is told the scenario's longest poll interval, as
its idle timeout for keep-alive connections (`idle_timeout_s`), so that an agent's connection
outlives the pause between two polls.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from loadtests.faults import FaultDriver
from loadtests.processes import LocustProcesses, child_env, locust_args
from loadtests.scrape import Scraper
from sim.scenario import Scenario
from sim.server.admin import ENV_ADMIN_TOKEN, AdminError, set_faults
from sim.server.process import ServerStartError, run_server
from sim.signing import Credentials, sign

_STARTUP_S = 90.0  # on top of the duration: Locust, workers and the final merge
_SERVER_START_S = 30.0
MAX_WORKERS = 64


class LoadError(Exception):
    """A problem the user can fix (the host, the token, the run directory, ...), said in one message.

    Messages name the options as `smsload load` spells them (`--host` is `LoadOptions.host`).
    """


class LoadFailed(Exception):
    """Locust ended without finishing the run; the directory holds what arrived, marked incomplete."""

    def __init__(self, out: Path, code: int | None) -> None:
        self.out, self.code = out, code
        super().__init__(f"Locust exited with code {code} and the run is incomplete; see {out / 'locust.log'}")


@dataclass(frozen=True)
class LoadOptions:
    """How to run a load test: where to, with which token, on how many Locust workers."""

    host: str | None = None  # base URL of the server to load; None: the reference server, started for the run
    token: str = field(default="", repr=False)  # X-Auth-Token; required with a host, else generated if empty
    admin_token: str = field(default="", repr=False)  # the fault admin token of --host (faults only)
    workers: int = 0  # Locust worker processes; 0: one standalone process
    quiet: bool = False  # no Locust progress lines (what the run is doing is still said)
    ak_sk: Credentials | None = field(default=None, repr=False)  # sign the agents' requests with this pair
    # Further `smsload serve` options for the embedded server (the knee rig: --store-latency-ms,
    # --cpus, --cpu-quota); an error with a host, which is somebody else's server.
    server_args: tuple[str, ...] = ()


def check_host(url: str) -> str:
    """A base URL to load: http(s)://host[:port][/prefix], without a trailing slash."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise LoadError(f"--host: expected http://HOST[:PORT] or https://..., got {url!r}")
    return url.rstrip("/")


def idle_timeout_s(scenario: Scenario) -> float:
    """The embedded server's idle timeout: twice the longest pause between an agent's polls, and
    never below the server's default (65 s)."""
    longest = scenario.agent.poll_interval_s + scenario.agent.poll_jitter_s
    return max(65.0, 2.0 * longest)


def probe(host: str, token: str, ak_sk: Credentials | None = None) -> None:
    """One authenticated GET, so an unreachable server or a refused token (or key) is one clear line."""
    import httpx

    headers = {"X-Auth-Token": token}
    if ak_sk is not None:
        headers = sign(ak_sk, "GET", urlsplit(host).netloc, f"{urlsplit(host).path}/v3/sources", "limit=1")
    try:
        response = httpx.get(
            f"{host}/v3/sources?limit=1",
            headers=headers,
            timeout=5.0,
            follow_redirects=False,
        )
    except httpx.TimeoutException:
        raise LoadError(f"--host {host}: no answer within 5 s") from None
    except httpx.TransportError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoadError(f"--host {host}: cannot reach the server ({reason})") from None
    if response.status_code in (401, 403):
        what = "the AK/SK signature" if ak_sk is not None else "the token"
        raise LoadError(f"--host {host}: the server refused {what} (HTTP {response.status_code})")


def run_load(
    scenario: Scenario, out: Path, options: LoadOptions = LoadOptions(), progress: Callable[[str], None] | None = None
) -> Path:
    """Load-test `scenario` for its duration; write and return the run directory `out`.

    `progress(line)` hears what the run is doing (the target, the server's PID, stopping) and,
    unless `options.quiet`, Locust's progress every few seconds. Raises `LoadError` before
    anything runs when the options, the host or `out` will not do; `LoadFailed` when Locust
    ends without finishing the run; `KeyboardInterrupt` after an interrupted run has been
    written, marked incomplete, with the server and Locust stopped.
    """
    host = _check(out, options, bool(scenario.fault_timeline()))
    scenario = scenario.resolve_public_api(external=host is not None)
    say = progress or (lambda line: None)
    token = options.token or secrets.token_urlsafe(24)
    out.mkdir(parents=True, exist_ok=True)
    db = None if host else f"sqlite:///{(out / 'server.sqlite3').resolve()}"
    if host:
        say(f"smsload load: target {host}")
    env = child_env(token)
    if options.ak_sk is not None:
        creds = options.ak_sk
        env["SMS_AK_SK"] = f"{creds.ak}:{creds.sk}={creds.project}"
    # The fault switch: the embedded server gets an admin token of its own (in its environment
    # only: not Locust's, no command line, no file); --host needs one given.
    admin = (options.admin_token if host else secrets.token_urlsafe(24)) if scenario.fault_timeline() else ""
    server_env = {**env, ENV_ADMIN_TOKEN: admin} if admin else env
    interrupted, code = False, None
    with _stop_signals() as stopping, tempfile.TemporaryDirectory(prefix="smsload-load-") as tmp:
        try:
            # Locust reads the scenario from a file (its master hands it on to the workers).
            scenario_file = Path(tmp) / "scenario.yaml"
            scenario_file.write_text(yaml.safe_dump(scenario.to_dict(), sort_keys=False), encoding="utf-8")
            embedded = (
                run_server(
                    db,
                    [],
                    out / "server.log",
                    liveness=scenario.server.liveness,
                    env=server_env,
                    timeout_s=_SERVER_START_S,
                    extra=("--idle-timeout-s", f"{idle_timeout_s(scenario):g}", *options.server_args),
                )
                if db
                else contextlib.nullcontext(None)
            )
            with embedded as server:
                target = server.base_url if server is not None else host
                assert target is not None
                if server is not None:
                    say(f"smsload load: reference server on {target} (pid {server.pid}), store in {out}")
                scraper = Scraper(target, token).start()
                faults = FaultDriver(scenario.fault_timeline(), target, admin, out, say) if admin else None
                if faults is not None:
                    try:
                        faults.prime()
                    except AdminError as exc:
                        raise LoadError(f"faults: {exc}") from None
                    faults.start()
                try:
                    code, interrupted = _run_locust(scenario, scenario_file, target, out, env, options, say, stopping)
                finally:  # while the server still answers, so its export gives the tables
                    stopping()
                    scraper.stop()
                    if faults is not None:
                        faults.stop()
                        faults.join(10.0)
                        _write_applied(out, faults)
                    _finish_if_needed(out, scenario, token, target)
                    _write_scrape(out, scraper, say)
        except KeyboardInterrupt:
            interrupted = True
        except ServerStartError as exc:
            raise LoadError(f"the reference server did not start: {exc}") from None
        finally:
            stopping()
            _finish_if_needed(out, scenario, token, host)  # the server never started: what arrived
    if interrupted:
        raise KeyboardInterrupt
    if code not in (0, 1) or not _complete(out):  # 1: Locust saw failed requests, which the run shows
        raise LoadFailed(out, code)
    return out


def _write_applied(out: Path, faults: FaultDriver) -> None:
    """faults.json in the run directory: each change of the fault state, when planned and how late it landed."""
    record = {"applied": faults.applied, "error": faults.error}
    (out / "faults.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def check_options(options: LoadOptions) -> str | None:
    """The checked host (None: the embedded server), from the options alone: nothing is contacted.

    `smsload load` calls it before it reads the scenario, so a bad option is reported even
    when the scenario has problems of its own.
    """
    if not 0 <= options.workers <= MAX_WORKERS:
        raise LoadError(f"--workers: expected 0..{MAX_WORKERS}, got {options.workers}")
    if options.host is None:
        return None
    if options.server_args:
        raise LoadError(
            "--host: the server limits (--store-latency-ms, --cpus, --cpu-quota) are for the embedded server"
        )
    host = check_host(options.host)
    if not options.token and options.ak_sk is None:
        raise LoadError("--host needs a token (--token or $SMS_AUTH_TOKEN) or an AK/SK pair ($SMS_AK_SK)")
    return host


def _check(out: Path, options: LoadOptions, faults: bool = False) -> str | None:
    """The checked host (None: the embedded server); every problem found before anything starts."""
    host = check_options(options)
    if (out / "manifest.json").exists():
        raise LoadError(f"{out} already holds a run; choose another --out")
    if host is None:
        return None
    probe(host, options.token, options.ak_sk)
    if faults:
        if not options.admin_token:
            raise LoadError(
                f"faults: the scenario has faults; --host needs the server's admin token: --admin-token or "
                f"${ENV_ADMIN_TOKEN} (the server started with smsload serve --admin-token)"
            )
        try:
            set_faults(host, options.admin_token, None)
        except AdminError as exc:
            raise LoadError(f"faults: {exc}") from None
    return host


def _run_locust(
    scenario: Scenario,
    scenario_file: Path,
    target: str,
    out: Path,
    env: dict[str, str],
    options: LoadOptions,
    say: Callable[[str], None],
    stopping: Callable[[], None],
) -> tuple[int | None, bool]:
    """Locust's exit code, and whether the run was interrupted; Locust is gone when this returns."""
    args = locust_args(scenario=scenario_file, host=target, out=out, agents=None, duration_s=None)
    locust = LocustProcesses(out / "locust.log", None if options.quiet else say).start(args, env, options.workers)
    try:
        code = locust.wait(scenario.duration_s + _STARTUP_S)
        if code is None:
            say("smsload load: Locust did not finish in time; stopping it")
            locust.interrupt()
            code = locust.wait(30.0)
        return code, False
    except KeyboardInterrupt:
        stopping()
        say("smsload load: interrupted; stopping the users and writing the run directory")
        locust.interrupt()
        return locust.wait(30.0), True
    finally:
        stopping()  # what is left is cleanup: Locust, then the server, stopped whatever the user presses
        locust.stop()


@contextlib.contextmanager
def _stop_signals() -> Iterator[Callable[[], None]]:
    """SIGTERM stops a run the way Ctrl-C does; the handlers found are restored at the end.

    Yields `stopping()`: from then on a second Ctrl-C is ignored, so that the cleanup (bounded:
    every wait has a timeout and ends in SIGKILL) is not cut short and leaves nothing running.
    Signal handlers belong to the main thread; elsewhere the caller's handling stays as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    def stopping() -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_scrape(out: Path, scraper: Scraper, say: Callable[[str], None]) -> None:
    """`server.parquet` from the scrapes, its times from the run's t0 (the first scrape's when unknown)."""
    try:
        t0 = float(json.loads((out / "manifest.json").read_text()).get("t0_epoch"))
    except (OSError, ValueError, TypeError):
        t0 = scraper.rows[0][0] if scraper.rows else time.time()
    path = scraper.write(out, t0)
    if path is not None:
        say(f"smsload load: {scraper.scrapes} scrapes of the server's /metrics in {path.name}")
    elif scraper.absent:
        say(f"smsload load: no server metrics: {scraper.absent}")


def _complete(out: Path) -> bool:
    try:
        return json.loads((out / "manifest.json").read_text()).get("complete") is True
    except (OSError, ValueError):
        return False


def _target_of(out: Path, host: str | None) -> str | None:
    try:
        return json.loads((out / "manifest.json").read_text()).get("target") or host
    except (OSError, ValueError):
        return host


def _finish_if_needed(out: Path, scenario: Scenario, token: str, host: str | None) -> None:
    """Locust was killed, or never got to start: what arrived, merged and marked incomplete.

    The one place the load test finishes a run directory itself (Locust's master does it otherwise).
    """
    from loadtests.rundir import finish_run, is_finished, reopen_run

    if is_finished(out):
        return
    run = reopen_run(out, scenario, {"target": _target_of(out, host)})
    t0 = float(run.manifest.get("t0_epoch") or time.time())
    finish_run(run, complete=False, t0=t0, duration_s=max(0.0, time.time() - t0), token=token, extra={})
