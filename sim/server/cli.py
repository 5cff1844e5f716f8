"""`smsload serve`: run the reference SMS server.

The server runs on granian (ASGI) with `--workers` processes; uvicorn is the fallback when
granian cannot be imported. Workers build the app with `sim.server.app:app_from_env`, so the
store URL, the tokens, the AK/SK keys and the liveness policy travel to them in environment
variables (never on a command line; the secret keys are printed nowhere). With several
workers, their Prometheus metrics meet in a temporary directory removed at exit. The
store is opened once here first: a bad URL or an unreachable database is one line on stderr
and exit code 2, and the schema is created before several workers could race to create it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
from urllib.parse import urlsplit, urlunsplit

from sim.cli_support import UsageError, add_command
from sim.lifeline import DIE_WITH_ENV, die_with_parent
from sim.model.liveness import COALESCE_S, DISCONNECT_AFTER_S, Liveness, LivenessWrite
from sim.server.admin import ADMIN_PATH, ENV_ADMIN_TOKEN
from sim.server.rig import DEFAULT_PERIOD_US, CpuQuota, RigError, parse_cpus, parse_latency, pin_cpus
from sim.signing import Credentials, parse_ak_sk

DEFAULT_DB = "sqlite:///sms.sqlite3"
DEFAULT_PROJECT = "default"
TOKEN_ENV = "SMS_AUTH_TOKEN"
AK_SK_ENV = "SMS_AK_SK"  # AK:SK[=PROJECT], several separated by commas
# Idle keep-alive connections are closed after this long: above the 30 s poll interval an agent
# commonly uses, so a polling agent's connection stays open (granian's own default is 30 s).
DEFAULT_IDLE_TIMEOUT_S = 65.0
APP_FACTORY = "sim.server.app:app_from_env"
MAX_CONNECTIONS_PER_WORKER = 16384  # open connections a granian worker accepts (see _run_granian)
# A stop (Ctrl-C, SIGTERM, the death of the `smsload load` that started the server) lets the
# requests in flight finish for this long, then kills the workers still running. granian's own
# default waits for them without a bound; a test saw a kill -9 of `smsload load` leave its
# server shutting down for over 20 s, once in some 30 runs.
STOP_GRACE_S = 5
_PROJECT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TOKEN = re.compile(r"[!-~]{1,16384}")  # visible ASCII: what an HTTP header value can carry as is


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "serve",
        help="run the reference SMS server",
        description="Run the reference SMS server (the agent and operator API over SQLite or PostgreSQL) "
        "until SIGINT or SIGTERM. Prints one line: its URL, store and liveness (and the token, when it "
        "generated one). Clients authenticate with a token or an AK/SK signature (SDK-HMAC-SHA256, as the "
        "official SDK signs); Prometheus metrics at /metrics.",
        examples=[
            "smsload serve --port 0 --db memory://        # a free port, nothing kept on disk",
            "smsload serve --db postgresql://me@127.0.0.1/sms --workers 4 --token s3cret=team-a",
            "SMS_AK_SK='AK123:secret=team-a' smsload serve --port 0   # agents sign with AK/SK",
        ],
    )
    p.add_argument(
        "--db",
        default=DEFAULT_DB,
        help=f"store URL: sqlite:///PATH, postgresql://... or memory:// (default {DEFAULT_DB})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", default="8080", help="port to listen on; 0 picks a free one (default 8080)")
    p.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN[=PROJECT]",
        help=f"accept this X-Auth-Token, for PROJECT (default {DEFAULT_PROJECT!r}); repeatable. "
        f"Without --token: ${TOKEN_ENV}, else a generated token (printed)",
    )
    p.add_argument(
        "--ak-sk",
        action="append",
        default=[],
        metavar="AK:SK[=PROJECT]",
        help=f"also accept requests signed with this access key pair (SDK-HMAC-SHA256, as the official SDK "
        f"signs), for PROJECT (default {DEFAULT_PROJECT!r}); repeatable. Without it: ${AK_SK_ENV} "
        "(comma-separated). Prefer the variable: a command line is visible to every user of the machine",
    )
    p.add_argument("--workers", default="1", help="worker processes (default 1)")
    p.add_argument(
        "--idle-timeout-s",
        default=f"{DEFAULT_IDLE_TIMEOUT_S:g}",
        metavar="S",
        help="close a keep-alive connection idle this long; keep it above the agents' longest poll interval, "
        f"or every poll opens a new connection (default {DEFAULT_IDLE_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help=f"enable the fault admin endpoint {ADMIN_PATH} (X-Admin-Token: TOKEN), which `smsload load` "
        f"drives from the scenario's faults: list; default ${ENV_ADMIN_TOKEN}; without either, no fault switch",
    )
    modes = ", ".join(m.value for m in LivenessWrite)
    p.add_argument(
        "--liveness",
        default=LivenessWrite.COALESCED.value,
        metavar="MODE",
        help=f"how a poll records that its agent was seen ({modes}): every poll writes last_visit_time and "
        f"connected, or at most once per --liveness-coalesce-s per source, or never (read-only polls, "
        f"agents stay connected) (default {LivenessWrite.COALESCED.value})",
    )
    p.add_argument(
        "--liveness-coalesce-s",
        default=f"{COALESCE_S:g}",
        metavar="S",
        help=f"with --liveness coalesced: the least time between two recorded visits (default {COALESCE_S:g})",
    )
    p.add_argument(
        "--disconnect-after-s",
        default=f"{DISCONNECT_AFTER_S:g}",
        metavar="S",
        help=f"a source silent this long shows connected: false (default {DISCONNECT_AFTER_S:g}: three 30 s polls)",
    )
    rig = p.add_argument_group("knee rig", "limits that make the server, not the load generator, saturate")
    rig.add_argument(
        "--store-latency-ms",
        metavar="SPEC",
        help="a blocking delay per store transaction, standing for a remote database: "
        "lognormal:MEDIAN,SIGMA, exponential:MEAN or constant:MS",
    )
    rig.add_argument("--cpus", metavar="LIST", help="run the server on these cores only (e.g. 1, or 2-3)")
    rig.add_argument(
        "--cpu-quota",
        metavar="FRACTION",
        help="hold the server's processes to this fraction of one core (a cgroup CFS quota; needs root)",
    )
    rig.add_argument(
        "--cpu-period-us",
        default=str(DEFAULT_PERIOD_US),
        help=f"the quota's period in µs (default {DEFAULT_PERIOD_US}: short, so a busy server waits little)",
    )
    p.set_defaults(func=serve)


def parse_token(spec: str) -> tuple[str, str]:
    """`TOKEN` or `TOKEN=PROJECT` (split at the last `=`; a trailing `=` is token padding)."""
    token, sep, project = spec.rpartition("=")
    if not sep or not project:
        token, project = spec, DEFAULT_PROJECT
    if not _TOKEN.fullmatch(token):
        raise UsageError("--token: a token is 1-16384 visible ASCII characters (no spaces)")
    if not _PROJECT.fullmatch(project):
        raise UsageError(f"--token: bad project name {project!r} (letters, digits, _ . : -)")
    return token, project


def resolve_tokens(specs: list[str]) -> tuple[dict[str, str], str | None]:
    """token -> project from --token, else $SMS_AUTH_TOKEN, else one generated (also returned)."""
    tokens: dict[str, str] = {}
    for spec in specs:
        token, project = parse_token(spec)
        if tokens.get(token, project) != project:
            raise UsageError("--token: the same token is given for two projects")
        tokens[token] = project
    if tokens:
        return tokens, None
    env = os.environ.get(TOKEN_ENV, "")
    if env:  # a bare token: clients send this very value as their X-Auth-Token
        if not _TOKEN.fullmatch(env):
            raise UsageError(f"${TOKEN_ENV}: a token is 1-16384 visible ASCII characters (no spaces)")
        return {env: DEFAULT_PROJECT}, None
    generated = secrets.token_urlsafe(24)
    return {generated: DEFAULT_PROJECT}, generated


def resolve_keys(specs: list[str]) -> list[Credentials]:
    """The AK/SK pairs from --ak-sk, else from $SMS_AK_SK; an error never quotes a secret key."""
    where = "--ak-sk"
    if not specs and os.environ.get(AK_SK_ENV, "").strip():
        specs, where = [s for s in os.environ[AK_SK_ENV].split(",") if s.strip()], f"${AK_SK_ENV}"
    keys: dict[str, Credentials] = {}
    for spec in specs:
        try:
            creds = parse_ak_sk(spec.strip(), where)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if creds.ak in keys and keys[creds.ak] != creds:
            raise UsageError(f"{where}: access key {creds.ak} is given twice, differently")
        keys[creds.ak] = creds
    return list(keys.values())


def _count(value: str, name: str, low: int, high: int) -> int:
    if not (value.isascii() and value.isdigit()) or not low <= int(value) <= high:
        raise UsageError(f"{name}: expected an integer {low}..{high}, got {value!r}")
    return int(value)


def _seconds(value: str, name: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{name}: expected a number of seconds >= 0, got {value!r}")
    return seconds


def parse_liveness(mode: str, coalesce_s: str, disconnect_after_s: str) -> Liveness:
    """The liveness policy from the three flags, or UsageError naming the flag at fault."""
    modes = [m.value for m in LivenessWrite]
    if mode not in modes:
        raise UsageError(f"--liveness: expected one of {', '.join(modes)}, got {mode!r}")
    coalesce = _seconds(coalesce_s, "--liveness-coalesce-s")
    disconnect = _seconds(disconnect_after_s, "--disconnect-after-s")
    if disconnect <= 0:
        raise UsageError(f"--disconnect-after-s: expected more than 0, got {disconnect_after_s!r}")
    if mode == LivenessWrite.COALESCED.value and disconnect <= coalesce:
        raise UsageError(
            f"--disconnect-after-s: expected more than --liveness-coalesce-s ({coalesce:g}) with --liveness "
            f"coalesced, got {disconnect:g}"
        )
    return Liveness(LivenessWrite(mode), coalesce, disconnect)


def redact(url: str) -> str:
    """The store URL without its password, fit to print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_store(url: str) -> None:
    """Open (creating the schema on first use) and close the store, or raise UsageError."""
    from sim.server.stores import open_store

    os.environ.setdefault("PGCONNECT_TIMEOUT", "10")  # an unreachable PostgreSQL fails in seconds
    try:
        store = open_store(url)
        try:
            with store.read() as tx:  # stores connect lazily: make this one connect now
                tx.source_brief("")
        finally:
            store.close()
    except Exception as exc:  # any failure to open the store is the user's configuration to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--db {redact(url)}: cannot open the store: {first}") from None


def check_listen(host: str, port: int) -> int:
    """Bind (host, port) once to report a bad address here; port 0 becomes a free port.

    A free port found this way could in principle be taken before the server binds it; on a
    loopback test port that is not a practical concern, and the server then fails loudly."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            return sock.getsockname()[1]
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def serve(args: argparse.Namespace) -> int:
    # The application's modules (starlette, pydantic, the API core) when serving, not for `smsload --help`.
    from sim.server.app import ENV_DB, ENV_KEYS, ENV_LIVENESS, ENV_STORE_LATENCY, ENV_TOKENS
    from sim.server.faults import ENV_FAULT_FILE, new_fault_file, remove_fault_file
    from sim.server.metrics import MULTIPROC_ENV

    port = _count(args.port, "--port", 0, 65535)
    workers = _count(args.workers, "--workers", 1, 64)
    liveness = parse_liveness(args.liveness, args.liveness_coalesce_s, args.disconnect_after_s)
    idle_timeout_s = _seconds(args.idle_timeout_s, "--idle-timeout-s")
    if not 1 <= idle_timeout_s <= 86400:
        raise UsageError(f"--idle-timeout-s: expected 1..86400 seconds, got {args.idle_timeout_s!r}")
    keys = resolve_keys(args.ak_sk)
    tokens, generated = resolve_tokens(args.token)
    admin = args.admin_token or os.environ.get(ENV_ADMIN_TOKEN, "")
    if admin and not _TOKEN.fullmatch(admin):
        raise UsageError("--admin-token: a token is 1-16384 visible ASCII characters (no spaces)")
    db = args.db
    if db in ("memory", "memory://") and workers > 1:
        raise UsageError("--db memory:// keeps its data in one process; use --workers 1 or a database")
    check_store(db)
    port = check_listen(args.host, port)
    limits, quota = _apply_rig(args)

    # Started by a harness (`smsload load`, a test) that named itself: stop gracefully when it dies,
    # even by kill -9. And name this process to the workers, which are killed when it dies.
    die_with_parent(signal.SIGTERM)
    os.environ[DIE_WITH_ENV] = str(os.getpid())
    os.environ[ENV_DB] = db
    os.environ[ENV_TOKENS] = json.dumps(tokens)
    os.environ[ENV_LIVENESS] = json.dumps(liveness.to_dict())
    os.environ[ENV_KEYS] = json.dumps([[c.ak, c.sk, c.project] for c in keys])
    metrics_dir = None
    if workers > 1:  # each worker counts for itself; a scrape sums their files
        metrics_dir = tempfile.mkdtemp(prefix="smsload-metrics-")
        os.environ[MULTIPROC_ENV] = metrics_dir
    if args.store_latency_ms:
        os.environ[ENV_STORE_LATENCY] = args.store_latency_ms
    fault_file = new_fault_file() if admin else None
    if admin and fault_file:
        os.environ[ENV_ADMIN_TOKEN], os.environ[ENV_FAULT_FILE] = admin, fault_file
    host = f"[{args.host}]" if ":" in args.host else args.host
    plural = "s" if workers > 1 else ""
    print(
        f"smsload serve: listening on http://{host}:{port} (db {redact(db)}, {workers} worker{plural}, "
        f"liveness {_describe(liveness)}, idle connections closed after {idle_timeout_s:g} s)",
        flush=True,
    )
    if keys:
        print(f"smsload serve: AK/SK signatures accepted for {', '.join(c.ak for c in keys)}", flush=True)
    if limits:
        print(f"smsload serve: limited: {'; '.join(limits)}", flush=True)
    if admin:
        print(f"smsload serve: fault admin endpoint {ADMIN_PATH} enabled (X-Admin-Token)", flush=True)
    if generated:
        print(f"smsload serve: generated token {generated} (project {DEFAULT_PROJECT})", flush=True)
    try:
        try:
            import granian  # noqa: F401  (only to choose the server)
        except ImportError:
            _run_uvicorn(args.host, port, workers, idle_timeout_s)
        else:
            _run_granian(args.host, port, workers, idle_timeout_s)
    finally:
        if quota is not None:
            quota.release()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
        if fault_file is not None:
            remove_fault_file(fault_file)
    return 0


def _apply_rig(args: argparse.Namespace) -> tuple[list[str], CpuQuota | None]:
    """Apply the knee rig's limits to this process (the workers inherit them); what was applied.
    Every option is checked before any is applied."""
    limits: list[str] = []
    try:
        latency = parse_latency(args.store_latency_ms) if args.store_latency_ms else None
        cpus = parse_cpus(args.cpus) if args.cpus else None
        quota = None
        if args.cpu_quota:
            try:
                fraction = float(args.cpu_quota)
            except ValueError:
                raise RigError(f"--cpu-quota: expected a fraction of one core, got {args.cpu_quota!r}") from None
            quota = CpuQuota(fraction, _count(args.cpu_period_us, "--cpu-period-us", 1000, 1_000_000))
        if latency is not None:
            limits.append(f"store latency {latency.to_spec()} ms per transaction")
        if cpus is not None:
            pin_cpus(cpus)
            limits.append(f"cores {sorted(cpus)}")
        if quota is not None:
            quota.apply()
            limits.append(f"CPU quota {quota.fraction:g} core per {quota.period_us} µs (cgroup {quota.path})")
    except RigError as exc:
        raise UsageError(str(exc)) from None
    return limits, quota


def _describe(liveness: Liveness) -> str:
    if liveness.write is LivenessWrite.OFF:
        return "off"
    every = f"at most every {liveness.coalesce_s:g} s" if liveness.write is LivenessWrite.COALESCED else "every poll"
    return f"{every}, disconnected after {liveness.disconnect_after_s:g} s"


def _run_granian(host: str, port: int, workers: int, idle_timeout_s: float) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    # granian's main process handles SIGINT/SIGTERM itself: it stops the workers and returns.
    # granian's backpressure caps the connections a worker accepts (default backlog / workers =
    # 1024); every agent keeps a keep-alive connection, so a fleet of a few thousand would find
    # the rest never accepted (connect timeouts). Cap it at what a process can hold instead.
    Granian(
        APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=workers,
        backpressure=MAX_CONNECTIONS_PER_WORKER,
        # granian closes an HTTP/1 connection that sends no request line for `header_read_timeout`:
        # that is its idle timeout between keep-alive requests (30 s by default, measured in
        # benchmarks/RESULTS.md "Load generator").
        http1_settings=HTTP1Settings(header_read_timeout=int(idle_timeout_s * 1000)),
        workers_kill_timeout=STOP_GRACE_S,
        factory=True,
        log_level=LogLevels.warning,
    ).serve()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _run_uvicorn(host: str, port: int, workers: int, idle_timeout_s: float) -> None:
    import uvicorn

    # After its graceful shutdown uvicorn restores the handlers it found and raises the stop
    # signal again (to die by it); with these handlers a requested stop is exit code 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        APP_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        lifespan="on",
        timeout_keep_alive=max(1, math.ceil(idle_timeout_s)),
        timeout_graceful_shutdown=STOP_GRACE_S,
    )
