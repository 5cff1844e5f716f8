"""Typed errors of the SMS control plane, each carrying an error code and an HTTP status.

Codes from the public SMS documentation are used wherever one fits (SMS.1038, SMS.1039,
SMS.1040, SMS.2004-2006, SMS.2009, SMS.2015, SMS.2206, SMS.2216). Where the documentation
has no code for a situation the reference server must still answer, it uses its own codes in
the SMS.98xx range; they are listed in `REFERENCE_CODES` and in the server's README section.
"""

from __future__ import annotations


class SmsError(Exception):
    """An error the API reports as `{"error_code": ..., "error_msg": ...}` with `http_status`."""

    code: str = "SMS.2007"
    http_status: int = 500

    def __init__(self, msg: str, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status

    def body(self) -> dict[str, str]:
        return {"error_code": self.code, "error_msg": self.msg}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.msg})"


class IllegalTransition(SmsError):
    """An operator action or agent report that the task's state does not allow."""

    http_status = 400


class CommandMismatch(SmsError):
    """SMS.2009: the agent reported a result for a command other than the pending one."""

    code = "SMS.2009"
    http_status = 400


class InvalidRequest(SmsError):
    """The request body is malformed, has wrong types or unknown enum values."""

    code = "SMS.9801"
    http_status = 400


class NotFound(SmsError):
    """The source or task does not exist, or is not visible to the caller's project."""

    code = "SMS.9802"
    http_status = 404


class Unauthorized(SmsError):
    """No X-Auth-Token, or one the server does not know."""

    code = "SMS.9803"
    http_status = 401


class Conflict(SmsError):
    """The action is not allowed now and the documentation has no code for it."""

    code = "SMS.9804"
    http_status = 409


class ProgressRejected(SmsError):
    """A progress report for a task that is not running, out of subtask order, or going down."""

    code = "SMS.9805"
    http_status = 400


class SourceBusy(SmsError):
    """The source server already has a migration task."""

    code = "SMS.9806"
    http_status = 409


class SourceNotFound(SmsError):
    """SMS.2216: a task was created for a source server that does not exist."""

    code = "SMS.2216"
    http_status = 400


class UnsupportedOs(SmsError):
    """SMS.2206: the source OS is not supported for this task type (Windows file-level)."""

    code = "SMS.2206"
    http_status = 400


# The reference server's own codes, for situations the public documentation does not cover.
REFERENCE_CODES: dict[str, str] = {
    "SMS.9801": "400: request body malformed, of the wrong type, or with an unknown enum value",
    "SMS.9802": "404: no such source server or task (or not visible to this token's project)",
    "SMS.9803": "401: X-Auth-Token missing or unknown",
    "SMS.9804": "409: the action is not allowed in the task's state (no documented code)",
    "SMS.9805": "400: progress report rejected (task not running, subtask out of order, progress going down)",
    "SMS.9806": "409: the source server already has a migration task",
}
