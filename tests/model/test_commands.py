"""The command model: the documented examples round-trip; "nothing pending" in every form; strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.model.commands import (
    Command,
    CommandFormatError,
    CommandName,
    command_from_dict,
    command_to_json,
    parse_command,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "commands"
TASK_ID = "2c0689c860ad4728a497c91ec0844384"


@pytest.mark.parametrize("name", ["start", "stop", "sync", "delete", "upload_log"])
def test_documented_examples_round_trip(name: str) -> None:
    text = (FIXTURES / f"{name}.json").read_text().strip()
    command = parse_command(text)
    assert command is not None and command.name is CommandName(name.upper())
    assert json.loads(command.to_json()) == json.loads(text)
    assert command_to_json(command) == text  # compact separators, documented key order
    assert parse_command(command.to_json()) == command


def test_parameters_as_documented() -> None:
    assert parse_command((FIXTURES / "start.json").read_text()) == Command(CommandName.START, task_id=TASK_ID)
    log = parse_command((FIXTURES / "upload_log.json").read_text())
    assert log == Command(CommandName.UPLOAD_LOG, bucket="logbucket", object="")
    assert log.param() == {"bucket": "logbucket", "object": ""}


# The official SYNC, DELETE and UPLOAD_LOG examples, typos included: not JSON, so not accepted.
DOCUMENTED_TYPOS = [
    '{"command_name":"SYNC" "command_param":{"task_id":"%s"}}' % TASK_ID,
    '{"command_name":"DELETE" "command_param":{"task_id":"%s"}}' % TASK_ID,
    '{"command_name":"UPLOAD_LOG" "command_param":{"bucket":"logbucket" "object":""}}',
]


@pytest.mark.parametrize("text", DOCUMENTED_TYPOS)
def test_invalid_json_is_rejected_not_repaired(text: str) -> None:
    with pytest.raises(CommandFormatError, match="not valid JSON"):
        parse_command(text)


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"command_name": null}',
        '{"command_name": ""}',
        '{"command_param": {}}',
        '{"command_name": null, "command_param": null}',
        '{"command_name": "TASK_NOT_STARTED"}',
        '{"command_name": "TASK_HAS_STOPPED"}',
        '{"command_name": "TASK_HAS_FINISHED"}',
    ],
)
def test_nothing_pending_in_every_form(body: str) -> None:
    assert parse_command(body) is None


def test_reference_server_sends_empty_object_for_nothing() -> None:
    assert command_to_json(None) == "{}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[]", "JSON object"),
        ('{"command_name": "REBOOT", "command_param": {}}', "unknown command_name 'REBOOT'"),
        ('{"command_name": 3}', "must be a string"),
        ('{"command_name": "START", "command_param": {}}', "task_id"),
        ('{"command_name": "START", "command_param": {"task_id": 7}}', "task_id must be a string"),
        ('{"command_name": "UPLOAD_LOG", "command_param": {"object": "x"}}', "bucket"),
        ('{"command_name": "STOP", "command_param": "abc"}', "command_param must be a JSON object"),
    ],
)
def test_malformed_commands_name_the_problem(body: str, message: str) -> None:
    with pytest.raises(CommandFormatError, match=message):
        parse_command(body)


def test_dedup_key_is_command_and_task() -> None:
    a = Command(CommandName.START, task_id="t1")
    assert a.key == Command(CommandName.START, task_id="t1").key
    assert a.key != Command(CommandName.STOP, task_id="t1").key
    assert a.key != Command(CommandName.START, task_id="t2").key


def test_command_from_dict_accepts_decoded_json() -> None:
    assert command_from_dict({"command_name": "SYNC", "command_param": {"task_id": "t"}}).name is CommandName.SYNC
