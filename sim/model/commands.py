"""The commands an agent receives from `GET .../command`, as the SMS API documents them.

A command is `{"command_name": NAME, "command_param": {...}}`: START, STOP, SYNC and DELETE
carry `task_id`; UPLOAD_LOG carries `bucket` and `object`. "Nothing pending" is `{}` from the
reference server; agents also accept `command_name` null, absent or empty, and the status
values newer SMS servers send (TASK_NOT_STARTED, TASK_HAS_STOPPED, TASK_HAS_FINISHED).

Parsing is strict JSON: a body that is not valid JSON is an error, never "repaired".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from sim.model.errors import InvalidRequest


class CommandName(str, Enum):
    START = "START"
    STOP = "STOP"
    SYNC = "SYNC"
    DELETE = "DELETE"
    UPLOAD_LOG = "UPLOAD_LOG"


TASK_COMMANDS = frozenset({CommandName.START, CommandName.STOP, CommandName.SYNC, CommandName.DELETE})

# Values newer SMS servers put in command_name that mean "no command for you".
NO_COMMAND_NAMES = frozenset({"", "TASK_NOT_STARTED", "TASK_HAS_STOPPED", "TASK_HAS_FINISHED"})

# The command list of the current public SDK (2026-01 on; sms-api-reference.md, 1.2). The reference
# server never sends SKIP or PREMIGRATE, but a real server may: the agent must answer them too.
PUBLIC_SDK_COMMAND_NAMES = frozenset(
    {"START", "STOP", "SKIP", "PREMIGRATE", "TASK_NOT_STARTED", "TASK_HAS_STOPPED", "TASK_HAS_FINISHED"}
)


class CommandFormatError(InvalidRequest):
    """A command body that is not valid JSON or does not have the documented shape."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command for an agent. `task_id` for task commands; `bucket`/`object` for UPLOAD_LOG."""

    name: CommandName
    task_id: str | None = None
    bucket: str | None = None
    object: str | None = None

    def __post_init__(self) -> None:
        if self.name in TASK_COMMANDS:
            if not isinstance(self.task_id, str) or not self.task_id:
                raise CommandFormatError(f"{self.name.value} needs command_param.task_id (a non-empty string)")
        elif not isinstance(self.bucket, str) or not self.bucket:
            raise CommandFormatError("UPLOAD_LOG needs command_param.bucket (a non-empty string)")

    def param(self) -> dict[str, str]:
        if self.name is CommandName.UPLOAD_LOG:
            return {"bucket": self.bucket or "", "object": self.object or ""}
        return {"task_id": self.task_id or ""}

    def to_dict(self) -> dict[str, Any]:
        return {"command_name": self.name.value, "command_param": self.param()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def key(self) -> tuple[str, str]:
        """What an agent de-duplicates re-delivered commands by: the command and its task (or log object)."""
        if self.name is CommandName.UPLOAD_LOG:
            return (self.name.value, f"{self.bucket}/{self.object}")
        return (self.name.value, self.task_id or "")


NO_COMMAND_JSON = "{}"


def command_from_dict(doc: Any) -> Command | None:
    """The command in a decoded poll response, or None when nothing is pending."""
    if not isinstance(doc, dict):
        raise CommandFormatError(f"a command response must be a JSON object, got {type(doc).__name__}")
    name = doc.get("command_name")
    if name is None or name in NO_COMMAND_NAMES:
        return None
    if not isinstance(name, str):
        raise CommandFormatError(f"command_name must be a string, got {type(name).__name__}")
    try:
        cname = CommandName(name)
    except ValueError:
        raise CommandFormatError(
            f"unknown command_name {name!r}; expected one of {', '.join(c.value for c in CommandName)}"
        ) from None
    param = doc.get("command_param")
    if param is None:
        param = {}
    if not isinstance(param, dict):
        raise CommandFormatError(f"command_param must be a JSON object, got {type(param).__name__}")
    for field in ("task_id", "bucket", "object"):
        if field in param and param[field] is not None and not isinstance(param[field], str):
            raise CommandFormatError(f"command_param.{field} must be a string")
    return Command(cname, task_id=param.get("task_id"), bucket=param.get("bucket"), object=param.get("object"))


@dataclass(frozen=True, slots=True)
class ForeignCommand:
    """A well-formed command whose name this model does not carry out as a `Command` (SKIP,
    PREMIGRATE, a name from a later API version). The agent still answers it, so that it does
    not block the source's queue: the real agent acknowledges SKIP (it skips the consistency
    check, which this model does not run), anything else gets `fail`."""

    name: str
    task_id: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.task_id)


def foreign_command(doc: Any) -> ForeignCommand | None:
    """The command in a poll response whose command_name is a string outside `CommandName` (and
    not a no-command value), with `command_param` an object or absent; None otherwise."""
    if not isinstance(doc, dict):
        return None
    name, param = doc.get("command_name"), doc.get("command_param")
    if not isinstance(name, str) or name in NO_COMMAND_NAMES or name in CommandName.__members__:
        return None
    if param is not None and not isinstance(param, dict):
        return None
    task_id = (param or {}).get("task_id")
    return ForeignCommand(name, task_id if isinstance(task_id, str) else "")


def parse_command(text: str | bytes) -> Command | None:
    """Parse a poll response body (strict JSON). None means no command is pending."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandFormatError(f"command response is not valid JSON: {exc}") from None
    return command_from_dict(doc)


def command_to_json(command: Command | None) -> str:
    """The poll response body the reference server sends: the command, or `{}`."""
    return NO_COMMAND_JSON if command is None else command.to_json()
