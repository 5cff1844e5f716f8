"""Wiring the load test into Locust: command-line options, the run clock, agent ids, records.

A locustfile calls `events.init_command_line_parser.add_listener(add_arguments)` and
`install(events)`; `loadtests/locustfile.py` does, and so can a benchmark's locustfile that
adds its own plain user beside ours. Each Locust process then holds one `LoadTest`
(`LoadTest.of(environment)`): the scenario, the run's start `t0`, this process's agent ids
and its `Recorder`.

The master (or a standalone process) owns the run: when a test starts it fixes `t0`, the run
id and the agent-id stride, and hands them, with the resolved scenario, to its workers in
Locust's own spawn message (custom options travel with it), so workers on other machines need
only this code, not the scenario file. Agent ids: a process with worker index `w` gives its
k-th agent the id `w + k * stride`, `stride` being the number of worker indexes the master
had handed out when the test started. Ids are unique across workers; they are 0..N-1 when
the workers run equal numbers of agents (Locust balances them to within one), and agent i
is the same agent as in the simulation. A worker that joins after the start has no ids of
its own and runs no agents.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment
from locust.event import Events
from locust.runners import STATE_RUNNING, STATE_SPAWNING, WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner

from loadtests.common_options import apply_common_options, implied
from loadtests.processes import PROGRESS_MARK
from loadtests.recorder import EXECUTOR, PartWriter, Recorder, from_ipc
from loadtests.rundir import default_out, finish_run, open_run
from sim.records import RunDir, run_id_for
from sim.scenario import Scenario, ScenarioError, validate_scenario
from sim.scenario_shorten import shorten
from sim.scenarios import find_scenario
from sim.signing import Credentials, parse_ak_sk

DEFAULT_HOST = "http://127.0.0.1:8080"  # without --host, requests stay on this machine
TOKEN_ENV = "SMS_AUTH_TOKEN"
AK_SK_ENV = "SMS_AK_SK"  # AK:SK[=PROJECT]: sign requests instead of sending the token
SAMPLE_EVERY_S = 1.0
PROGRESS_EVERY_S = 5.0
log = logging.getLogger("smsload.load")


def add_arguments(parser: Any) -> None:
    """Locust's `init_command_line_parser` hook: the options of this load test."""
    # Locust's own parser, not an argument group: only it knows `include_in_web_ui`/`is_secret`.
    group = parser
    group.add_argument(
        "--scenario",
        default=None,
        include_in_web_ui=False,
        help="scenario YAML file or shipped scenario name (required; fixed for the life of the Locust process)",
    )
    group.add_argument("--sms-token", default="", is_secret=True, help=f"X-Auth-Token to send (default: ${TOKEN_ENV})")
    group.add_argument(
        "--sms-out",
        default=None,
        include_in_web_ui=False,
        help="run directory to write (default runs/NAME-locust-TIMESTAMP)",
    )
    group.add_argument(
        "--sms-agents", type=int, default=None, include_in_web_ui=False, help="override the scenario's fleet.agents"
    )
    group.add_argument(
        "--sms-duration-s", type=float, default=None, include_in_web_ui=False, help="override the scenario's duration_s"
    )


class LoadTest:
    """One Locust process's share of the load test."""

    def __init__(self, environment: Environment) -> None:
        runner = environment.runner
        self.environment = environment
        self.role = (
            "master" if isinstance(runner, MasterRunner) else "worker" if isinstance(runner, WorkerRunner) else "local"
        )
        self.scenario: Scenario | None = None  # the current test's
        self.configured: Scenario | None = None  # the command line's: --scenario, --sms-*, -u/-r
        self.t0: float | None = None
        self.t_end: float | None = None
        self.reached_end = False  # the shape ran the whole planned duration
        self.rng = random.Random()  # one stream for the process: a generator per agent costs ~2.5 KB
        self.violations: list[str] = []
        self._worker_violations = 0
        self._local_count = 0
        self._stride = 1
        self._run: RunDir | None = None
        self._parts: PartWriter | None = None
        self._tests = 0
        self._ticker: gevent.Greenlet | None = None
        self.recorder = Recorder("local" if self.role == "local" else self.role)

    @property
    def runner(self) -> Any:
        """The process's Locust runner: set before any hook that uses it runs. Typed loosely since
        which attributes it has (`worker_index`, ...) depends on the process's role."""
        runner = self.environment.runner
        assert runner is not None, "Locust creates the runner before the test starts"
        return runner

    @staticmethod
    def of(environment: Environment) -> LoadTest:
        return environment.smsload  # type: ignore[attr-defined]

    @property
    def options(self) -> Any:
        return self.environment.parsed_options

    @property
    def token(self) -> str:
        return getattr(self.options, "sms_token", "") or os.environ.get(TOKEN_ENV, "")

    @property
    def credentials(self) -> Credentials | None:
        """The AK/SK pair the users sign with ($SMS_AK_SK, its first pair), or None: the token."""
        spec = os.environ.get(AK_SK_ENV, "").split(",")[0].strip()
        return parse_ak_sk(spec, f"${AK_SK_ENV}") if spec else None

    @property
    def duration_s(self) -> float:
        """The planned length of the run: the scenario's, or Locust's --run-time if shorter."""
        assert self.scenario is not None
        run_time = getattr(self.options, "run_time", None)
        return min(self.scenario.duration_s, run_time) if run_time else self.scenario.duration_s

    def elapsed(self) -> float:
        return 0.0 if self.t0 is None else max(0.0, time.time() - self.t0)

    def next_agent_index(self) -> int:
        index = getattr(self.environment.runner, "worker_index", 0)
        if index >= self._stride:
            raise RuntimeError(f"worker index {index} joined after the test started; it runs no agents")
        k, self._local_count = self._local_count, self._local_count + 1
        return index + k * self._stride

    def add_violations(self, agent_id: int, messages: list[str]) -> None:
        self.violations += [f"agent {agent_id}: {m}" for m in messages]

    # -- the run -----------------------------------------------------------------------------

    def load_scenario(self) -> Scenario:
        """The scenario named by --scenario (a path or a shipped name), with the command line's overrides."""
        path = getattr(self.options, "scenario", None)
        if not path:
            raise ScenarioError([("", "no scenario: pass --scenario FILE")], "--scenario")
        # Locust run by hand loads a server it did not start: documented operations only, unless
        # the scenario says otherwise (`smsload load` decides this before Locust starts).
        scenario = find_scenario(path).with_overrides(agents=self.options.sms_agents).resolve_public_api(external=True)
        if self.options.sms_duration_s is None:
            return scenario
        shortened, notes = shorten(scenario, self.options.sms_duration_s)
        if notes:
            log.warning("shortened to %g s: %s", self.options.sms_duration_s, "; ".join(notes))
        return shortened

    def configure(self) -> None:
        """At start-up (owner): the scenario with the command line's -u/-r; the web UI's form shows them."""
        self.configured = apply_common_options(self.load_scenario(), self.options.num_users, self.options.spawn_rate)
        self.scenario = self.configured
        self.options.num_users, self.options.spawn_rate = implied(self.configured)

    def begin(self) -> None:
        """`test_start`: the owner fixes and hands out t0, run id and stride; a worker takes them."""
        opts = self.options
        if self._ticker is not None:  # a worker's previous test (an owner's is closed by finish())
            self._ticker.kill()
        self._local_count, self.violations, self._worker_violations = 0, [], 0
        if self.role == "worker":
            self.scenario = validate_scenario(json.loads(opts.sms_scenario), "master")
            self.t0, self._stride = float(opts.sms_t0), int(opts.sms_stride)
            self.recorder.run_id = opts.sms_run_id
            self.recorder.process = f"worker-{self.runner.worker_index}"
        else:
            self.finish()  # a test restarted from the web UI: the previous one is a run of its own
            assert self.configured is not None
            # The web UI's users and spawn rate of this test (checked by `check_swarm` already).
            self.scenario = apply_common_options(self.configured, opts.num_users, opts.spawn_rate)
            self._tests += 1
            self.t0, self.t_end, self.reached_end = time.time(), None, False
            self._stride = self.runner.worker_index_max if self.role == "master" else 1
            run_id = run_id_for(self.scenario, EXECUTOR)
            opts.sms_t0, opts.sms_stride, opts.sms_run_id = self.t0, self._stride, run_id
            opts.sms_scenario = json.dumps(self.scenario.to_dict())
            self._run = open_run(self._out_path(), self.scenario, run_id, self._manifest_extra())
            self._parts = PartWriter(self._run.path)
            self.recorder.run_id = run_id
            log.info("%s run directory %s", PROGRESS_MARK, self._run.path)
        self.recorder.t0 = self.t0
        self._ticker = gevent.spawn(self._tick)

    def _out_path(self) -> Path:
        assert self.scenario is not None
        base = Path(self.options.sms_out) if self.options.sms_out else default_out(self.scenario)
        return base if self._tests == 1 else base.with_name(f"{base.name}-{self._tests}")

    def _manifest_extra(self) -> dict[str, Any]:
        return {
            "target": self.environment.host,
            "t0_epoch": self.t0,
            "role": self.role,
            "workers": self._stride if self.role == "master" else 0,
            "planned_duration_s": self.duration_s,
        }

    def _tick(self) -> None:
        """Once a second: sample this process; flush to disk (standalone); report progress (owner)."""
        last_progress = time.time()
        while True:
            asleep = time.monotonic()
            gevent.sleep(SAMPLE_EVERY_S)
            lag = max(0.0, time.monotonic() - asleep - SAMPLE_EVERY_S)
            self.recorder.sample(self.runner.user_count, lag)
            if self.role != "worker":
                self._flush()
                if time.time() - last_progress >= PROGRESS_EVERY_S:
                    last_progress = time.time()
                    total = self.environment.stats.total
                    log.info(
                        "%s %.0f s of %.0f s, %d users, %d requests, %d failures",
                        PROGRESS_MARK,
                        self.elapsed(),
                        self.duration_s,
                        self.runner.user_count,
                        total.num_requests,
                        total.num_failures,
                    )

    def _flush(self) -> None:
        if self._parts is not None:
            self._parts.write("requests", self.recorder.process, self.recorder.take_requests())
            self._parts.write("generator", self.recorder.process, self.recorder.take_samples())

    def on_worker_report(self, client_id: str, data: dict[str, Any]) -> None:
        """Master: a worker's chunk of rows, samples and violations, written at once."""
        chunk = data.get("smsload")
        if not chunk or self._parts is None:
            return
        source = f"worker-{chunk['worker']}"
        self._parts.write("requests", source, from_ipc(chunk["rows"]))
        self._parts.write("generator", source, from_ipc(chunk["samples"]))
        self.violations += chunk["violations"]

    def on_report_to_master(self, client_id: str, data: dict[str, Any]) -> None:
        """Worker: attach the rows recorded since the last report to the report itself."""
        if self.t0 is None:
            return
        new, self._worker_violations = self.violations[self._worker_violations :], len(self.violations)
        data["smsload"] = {
            "worker": self.runner.worker_index,
            **self.recorder.to_message(),
            "violations": new,
        }

    def stopped(self) -> None:
        """`test_stop` (owner): the test's run directory is finished now, not when Locust quits.

        A master hears its workers' last rows in their next report (every few seconds), so it
        finishes that run a report interval later, unless a new test has already finished it.
        """
        self.t_end = self.t_end or time.time()
        if self.role == "local":
            self.finish()
        elif self.role == "master" and self._run is not None:
            run = self._run

            def finish_if_current() -> None:
                if self._run is run:
                    self.finish()

            gevent.spawn_later(WORKER_REPORT_INTERVAL + 1.0, finish_if_current)

    def check_swarm(self, form: Any) -> str | None:
        """Why the web UI's users and spawn rate cannot be run (None: they can)."""
        assert self.configured is not None
        try:
            users = int(form["user_count"]) if form.get("user_count") else None
            rate = float(form["spawn_rate"]) if form.get("spawn_rate") else None
        except ValueError:
            return None  # Locust itself answers a malformed number
        try:
            apply_common_options(self.configured, users, rate)
        except ScenarioError as exc:
            return "; ".join(exc.lines())
        return None

    def finish(self) -> None:
        """Owner: flush, merge and close the current run directory (once)."""
        if self._ticker is not None:
            self._ticker.kill()
            self._ticker = None
        run, self._run = self._run, None
        if run is None or self.t0 is None:
            return
        self.recorder.sample(self.runner.user_count, 0.0)
        self._flush()
        end = self.t_end or time.time()
        total = self.environment.stats.total
        finish_run(
            run,
            complete=self.reached_end,
            t0=self.t0,
            duration_s=end - self.t0,
            token=self.token,
            extra={
                "locust_requests": total.num_requests,
                "locust_failures": total.num_failures,
                "agent_violations": self.violations[:100],
                "agent_violation_count": len(self.violations),
            },
        )
        log.info("%s wrote %s (%s)", PROGRESS_MARK, run.path, "complete" if self.reached_end else "incomplete")


def _interrupt() -> None:
    """SIGINT: KeyboardInterrupt in the main greenlet, where Locust waits for the test (thrown from
    the hub, as gevent does with an error that must stop the process; no traceback in the log)."""
    hub = gevent.get_hub()
    hub.loop.run_callback(hub.parent.throw, KeyboardInterrupt)


def install(events: Events) -> None:
    """Add the load test's listeners to Locust's events (call at import time of a locustfile)."""

    @events.init.add_listener
    def _init(environment: Environment, **_: Any) -> None:
        test = LoadTest(environment)
        environment.smsload = test  # type: ignore[attr-defined]
        environment.host = environment.host or DEFAULT_HOST
        try:
            test.credentials  # noqa: B018  (a bad $SMS_AK_SK is one line here, not an error per user)
        except ValueError as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None
        if test.role != "worker":
            try:
                test.configure()
            except ScenarioError as exc:
                log.error("%s", "; ".join(exc.lines()))
                raise SystemExit(2) from None
        environment.events.request.add_listener(test.recorder.on_request)
        # Ctrl-C (and `smsload load` passing one on) is SIGINT, on which Python raises
        # KeyboardInterrupt in whatever greenlet runs at that moment: once between the two
        # listeners of a request event, so that Locust counted a request the recorder never saw
        # (149 rows, 150 requests). Thrown into the main greenlet instead, where Locust stops the
        # test as on Ctrl-C.
        gevent.signal_handler(signal.SIGINT, _interrupt)
        if test.role != "worker":
            # Locust installs its SIGTERM handler only once a shape test is over: until then
            # SIGTERM would kill the process with its rows unwritten. Stopping the runner ends
            # the shape, and Locust then quits the way it does at the end of a test.
            gevent.signal_handler(signal.SIGTERM, test.runner.quit)
        if isinstance(environment.runner, MasterRunner):
            environment.events.worker_report.add_listener(test.on_worker_report)
        elif isinstance(environment.runner, WorkerRunner):
            environment.events.report_to_master.add_listener(test.on_report_to_master)

    @events.test_start.add_listener
    def _test_start(environment: Environment, **_: Any) -> None:
        LoadTest.of(environment).begin()

    @events.test_stop.add_listener
    def _test_stop(environment: Environment, **_: Any) -> None:
        test = LoadTest.of(environment)
        if test.role == "worker":
            test.t_end = test.t_end or time.time()
        else:
            test.stopped()

    @events.init.add_listener
    def _web_ui(environment: Environment, web_ui: Any = None, **_: Any) -> None:
        """Refuse, with the reason, a test from the web UI whose users or spawn rate cannot be run."""
        if web_ui is None:
            return
        from flask import jsonify, request

        @web_ui.app.before_request
        def _check_swarm() -> Any:
            if request.method == "POST" and request.path.rstrip("/").endswith("/swarm"):
                reason = LoadTest.of(environment).check_swarm(request.form)
                if reason is not None:
                    log.error("%s", reason)
                    return jsonify({"success": False, "message": reason, "host": environment.host})
            return None

    # Registered at import, before the runner's own listener: `quitting` fires in reverse, so
    # the runner has already stopped its users (and a master heard its workers' last reports).
    @events.quitting.add_listener
    def _quitting(environment: Environment, **_: Any) -> None:
        test = LoadTest.of(environment)
        if test.role == "worker":
            return
        if environment.runner is not None and environment.runner.state in (STATE_SPAWNING, STATE_RUNNING):
            environment.runner.quit()  # a standalone process on SIGTERM: its users still run
        test.finish()
