"""Locust users that step the `sim.model` agent and operator over real HTTP.

Each user drives one model generator with `loadtests.driver.drive`: a `Sleep` is a gevent
sleep until the scheduled time, a `Call` one `self.client.request` named by its path
template (so Locust's statistics group by endpoint, as the records do). The response becomes
the `Outcome` the model reads. A request is a Locust failure exactly when it is not a 2xx,
the `ok` of the records; redirects are not followed, so no request leaves the given host.

The run owns its sources: each agent's source is named `RUN_ID-agent-NNNNNNN`
(`sim.fleet.source_prefix`), and the operator acts on no other source and on no task but its own.

Authentication: the token as `X-Auth-Token`, or, when the test has an AK/SK pair
($SMS_AK_SK), each request signed as the official SDK signs it (`sim.signing`). Connections:
`agent.connection: keep_alive` keeps one connection per user between requests (pooled sockets
are checked with poll(), `loadtests.pooled`, so this holds past 1,024 of them); `per_poll`
sends `Connection: close`, so every request opens a connection of its own (TCP, and TLS when
the host is https), as an agent that does not keep its connection would.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, constant, task
from locust.contrib.fasthttp import LocustBadStatusCode
from locust.env import Environment
from locust.exception import StopUser

from loadtests import pooled  # noqa: F401  (poll()-based pooled socket check, applied at import)
from loadtests.driver import Note, decode, drive, request_path
from loadtests.hooks import LoadTest
from sim.fleet import agent_spec, arrival_s, has_operator_work, operator_spec, source_prefix
from sim.model.agent import Agent
from sim.model.intents import Call, Outcome
from sim.model.operator import Operator
from sim.records import OPERATOR_ID
from sim.signing import sign


class ModelUser(FastHttpUser):
    """A user whose behaviour is a sans-I/O model; `send` is its one seam to HTTP."""

    abstract = True
    wait_time = constant(0)  # the model decides every wait itself

    def __init__(self, environment: Environment) -> None:
        test = LoadTest.of(environment)
        assert test.scenario is not None, "users start only after the test has started"
        # FastHttpSession reads these when the user is built: the scenario's timeout, per request.
        self.network_timeout = self.connection_timeout = test.scenario.agent.request_timeout_s
        super().__init__(environment)
        self.test = test
        self.agent_id = OPERATOR_ID
        self._seen = 0  # the agent's violations already reported
        self._creds = test.credentials
        self._headers = {} if self._creds else {"X-Auth-Token": test.token}
        if test.scenario.agent.connection == "per_poll":
            self._headers["Connection"] = "close"
        self._host = urlsplit(self.host or test.environment.host or "").netloc

    def _signed(self, call: Call, path: str) -> tuple[dict[str, str], str | None]:
        """Headers and body of a request signed with the test's AK/SK (the body as signed: ASCII JSON,
        so the bytes sent are the bytes signed)."""
        assert self._creds is not None
        body = None if call.body is None else json.dumps(call.body, separators=(",", ":"))
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        route, _, query = path.partition("?")
        return sign(self._creds, call.method, self._host, route, query, (body or "").encode(), headers), body

    def send(self, call: Call, t_sched: float) -> Outcome:
        """Make one request; the request event (and so the row) fires as the `with` block ends."""
        note = Note(self.agent_id, call, t_sched)
        path = request_path(call)
        if self._creds is None:
            headers, body, data = self._headers, call.body, None
        else:
            headers, data = self._signed(call, path)
            body = None
        with self.client.request(
            call.method,
            path,
            name=call.template,
            json=body,
            data=data,
            headers=headers,
            context={"sms": note},
            catch_response=True,
            allow_redirects=False,
        ) as response:
            meta = response.request_meta
            exc = meta["exception"]
            transport = exc is not None and not isinstance(exc, LocustBadStatusCode)
            status = 0 if transport else response.status_code
            outcome = decode(status, None if transport else response.content, meta["response_time"] / 1000.0, exc)
            note.outcome = outcome
            if not outcome.ok:
                # One short, bounded message per kind of failure (the raw URL would make one per agent).
                error = outcome.error_code or outcome.error
                response.failure(f"{status} {error}".strip() if status else error)
        return outcome


class AgentUser(ModelUser):
    """One migration agent (`sim.model.agent.Agent`) with a fleet-wide unique id."""

    def on_start(self) -> None:
        self.agent_id = self.test.next_agent_index()

    def send(self, call: Call, t_sched: float) -> Outcome:
        outcome = super().send(call, t_sched)
        if len(self.agent.violations) > self._seen:  # the agent saw a lifecycle rule broken
            self.test.add_violations(self.agent_id, self.agent.violations[self._seen :])
            self._seen = len(self.agent.violations)
        return outcome

    @task
    def run_agent(self) -> None:
        test = self.test
        assert test.scenario is not None and test.t0 is not None
        prefix = source_prefix(test.recorder.run_id)
        self.agent = Agent(agent_spec(test.scenario, self.agent_id, prefix), test.rng)
        self._seen = 0
        drive(self.agent.run(), self.send, test.t0 + arrival_s(test.scenario, self.agent_id), sleep=gevent.sleep)
        raise StopUser()  # the model ended (its registration was refused): no second agent with this id


class OperatorUser(ModelUser):
    """The operator (`sim.model.operator.Operator`): exactly one in the whole test."""

    fixed_count = 1

    @task
    def run_operator(self) -> None:
        test = self.test
        assert test.scenario is not None and test.t0 is not None
        if has_operator_work(test.scenario):
            spec = operator_spec(test.scenario, source_prefix(test.recorder.run_id))
            drive(Operator(spec, test.rng).run(), self.send, test.t0, sleep=gevent.sleep)
        raise StopUser()
