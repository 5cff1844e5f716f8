"""The SMS agent fleet as a Locust test: the same agent and operator models as the simulation.

    locust -f loadtests/locustfile.py --scenario quickstart --host http://127.0.0.1:8080
    locust -f loadtests/locustfile.py --scenario quickstart --host URL --headless

The token is $SMS_AUTH_TOKEN or --sms-token. Every request becomes a row of a run directory
(--sms-out, default runs/NAME-locust-TIMESTAMP) with the simulation's schema. `smsload load`
runs this file for you, with the reference server or against --host; see README.md.
"""

from __future__ import annotations

import signal

from locust import events

from loadtests.hooks import add_arguments, install
from loadtests.shape import FleetShape
from loadtests.users import AgentUser, OperatorUser
from sim.lifeline import die_with_parent

# Under `smsload load`: die with it, even by kill -9, rather than finish a run nobody waits for
# and mark it complete.
die_with_parent(signal.SIGKILL)

events.init_command_line_parser.add_listener(add_arguments)
install(events)

__all__ = ["AgentUser", "FleetShape", "OperatorUser"]
