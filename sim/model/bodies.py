"""The API's request bodies, as strict pydantic models: what the API core accepts.

Types are strict (a string is not a number, a number is not a string) and enums are closed:
a value the SMS documentation does not list is rejected. Fields a model does not declare are
ignored (`extra="ignore"`), because real agents and consoles send many optional fields the
reference server has no use for. Only the fields the public API marks as required are
required here, except on PostTask (see `CreateTaskBody`).

Bodies arrive as decoded JSON (dicts, lists, strings, numbers): from the reference server,
which decodes the wire bytes, and from the simulation, whose models build them as dicts.
`validate_body` checks both alike and raises `InvalidRequest` (SMS.9801) naming the first
offending field. Enum fields are validated by value (`strict=False` on the field): in strict
mode pydantic would accept only enum instances from Python data, and only their values from
JSON, and the two paths must answer the same.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from sim.model.errors import InvalidRequest
from sim.model.lifecycle import ALL_SUBTASK_NAMES, OsType, TaskType

SubtaskName = Enum("SubtaskName", {name: name for name in sorted(ALL_SUBTASK_NAMES)}, type=str)  # type: ignore[misc]


def _integral(value: Any) -> Any:
    """JSON Schema's `integer` includes 93.0: take an integral float as the integer (strict mode would not)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema (and so the OpenAPI document) means it: 93 and 93.0, not 93.5, "93" or true.
Int = Annotated[int, BeforeValidator(_integral)]
# Public ids are 1 to 36 characters (the server's own are 32 hex digits).
ID_MAX_LENGTH = 36
# Speeds in Mbit/s beyond any link: a bound keeps 8 x a v1 MByte/s speed finite.
MAX_SPEED = 1e12


class _Body(BaseModel):
    # allow_inf_nan=False: JSON has no Infinity or NaN, and a view must stay valid JSON.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)


# -- agent side ------------------------------------------------------------------------------


class ServerDisk(_Body):
    """One disk of a source server; `size` and `used_size` are bytes."""

    name: str
    size: Int = Field(ge=0)
    used_size: Int | None = Field(default=None, ge=0)
    partition_style: Literal["MBR", "GPT"] | None = None
    device_use: Literal["NORMAL", "OS", "BOOT", "VOLUME_GROUP", "BTRFS"] | None = None
    os_disk: bool | None = None
    relation_name: str | None = None


class RegisterBody(_Body):
    """PostSourceServerBody (`POST /v3/sources`): name and os_type, and at least one of ip/ipv6."""

    name: str = Field(min_length=1, max_length=255)
    os_type: OsType = Field(strict=False)
    id: str | None = Field(default=None, min_length=1, max_length=ID_MAX_LENGTH)
    ip: str | None = None
    ipv6: str | None = None
    hostname: str | None = None
    os_version: str | None = None
    agent_version: str | None = None
    kernel_version: str | None = None
    firmware: Literal["BIOS", "UEFI"] | None = None
    cpu_quantity: Int | None = Field(default=None, ge=0)
    memory: Int | None = Field(default=None, ge=0)
    disks: list[ServerDisk] = []
    btrfs_list: list[Any] | None = None
    networks: list[Any] | None = None
    domain_id: str | None = None
    migration_cycle: Literal["cutovering", "cutovered", "checking", "setting", "replicating", "syncing"] | None = None
    start_type: str | None = None
    io_read_wait: float | None = None
    has_tc: bool | None = None
    has_rsync: bool | None = None
    paravirtualization: bool | None = None
    platform: Literal["hw", "ali", "aws", "azure", "gcp", "tencent", "vmware", "hyperv", "other", "default"] | None = (
        None
    )

    @model_validator(mode="after")
    def _an_address(self) -> RegisterBody:
        if not self.ip and not self.ipv6:
            raise ValueError("ip or ipv6 is required")
        return self

    @property
    def total_bytes(self) -> int:
        return sum(d.size for d in self.disks)


# Registration fields kept on the source record and shown back in its view (scalars only:
# disks are summed into total_bytes, NIC and btrfs lists are not kept).
REGISTER_EXTRA_FIELDS = (
    "ipv6",
    "kernel_version",
    "firmware",
    "cpu_quantity",
    "memory",
    "domain_id",
    "migration_cycle",
    "start_type",
    "io_read_wait",
    "has_tc",
    "has_rsync",
    "paravirtualization",
    "platform",
)


class CommandResultBody(_Body):
    """CommandBody (`POST .../command_result`): all three fields are required."""

    command_name: Literal["START", "STOP", "DELETE", "SYNC", "UPLOAD_LOG", "RSET_LOG_ACL"]
    result: Literal["success", "fail"]
    result_detail: dict[str, Any]


class ProgressV1Body(_Body):
    """The v1 progress body (`PUT /v1/sms/tasks/{id}/progress`); migrate_speed is MByte/s."""

    subtask_name: SubtaskName = Field(strict=False)
    progress: Int = Field(ge=0, le=100)
    migrate_speed: float | None = Field(default=None, ge=0, le=MAX_SPEED)


class ProgressV3Body(_Body):
    """UpdateTaskSpeedReq (`PUT /v3/tasks/{id}/progress`): the first five fields are required (as in Go)."""

    subtask_name: SubtaskName = Field(strict=False)
    progress: Int = Field(ge=0, le=100)
    replicatesize: Int = Field(ge=0)
    totalsize: Int = Field(ge=0)
    process_trace: str
    migrate_speed: float | None = Field(default=None, ge=0, le=MAX_SPEED)
    compress_rate: float | None = None
    remain_time: Int | None = None
    total_cpu_usage: float | None = None
    agent_cpu_usage: float | None = None
    total_mem_usage: float | None = None
    agent_mem_usage: float | None = None
    total_disk_io: float | None = None
    agent_disk_io: float | None = None
    need_migration_test: bool | None = None
    agent_time: str | None = None


# -- operator side ---------------------------------------------------------------------------


class SourceRef(_Body):
    id: str = Field(min_length=1, max_length=ID_MAX_LENGTH)


class CreateTaskBody(_Body):
    """PostTask (`POST /v3/tasks`). The real API also requires target_server, region_name,
    region_id, project_name and project_id; the reference server has no target cloud, so it
    accepts them, keeps them on the task, and does not require them."""

    name: str = Field(min_length=1, max_length=255)
    type: TaskType = Field(strict=False)
    source_server: SourceRef
    os_type: OsType | None = Field(default=None, strict=False)
    target_server: dict[str, Any] | None = None
    region_name: str | None = None
    region_id: str | None = None
    project_name: str | None = None
    project_id: str | None = None
    priority: Int | None = Field(default=None, ge=0, le=2)
    start_target_server: bool | None = None
    auto_start: bool | None = None
    migration_ip: str | None = None
    vm_template_id: str | None = None
    clonevm_template_id: str | None = None
    use_public_ip: bool | None = None
    use_ipv6: bool | None = None
    exist_server: bool | None = None
    syncing: bool | None = None
    start_network_check: bool | None = None
    speed_limit: Int | None = Field(default=None, ge=0)
    over_speed_threshold: float | None = None
    is_need_consistency_check: bool | None = None
    need_migration_test: bool | None = None


# Every documented operation (any API version); `sync` is this project's stand-in for the
# console's synchronize. A Literal for pydantic, and the two tuples below derived from it.
Operation = Literal[
    "start",
    "stop",
    "restart",
    "sync",
    "test",
    "clone_test",
    "network_check",
    "skip",
    "clear",
    "migration_test",
    "cutover",
    "error_for_overspeed",
    "collect_log",
    "sync_failed_rollback",
]
SIMULATED_OPERATIONS = ("start", "stop", "restart", "sync")
# Documented operations the reference server knows but does not simulate.
UNSIMULATED_OPERATIONS = tuple(op for op in get_args(Operation) if op not in SIMULATED_OPERATIONS)


class TaskActionBody(_Body):
    """`POST /v3/tasks/{id}/action`. `sync` is this project's stand-in for the console's synchronize."""

    operation: Operation
    template_id: str | None = None
    switch_hce: bool | None = None
    is_need_consistency_check: bool | None = None
    param: dict[str, str] | None = None


class CollectLogBody(_Body):
    """`POST /v3/tasks/{id}/log`."""

    log_bucket: str = Field(min_length=1, max_length=255)


# -- parsing ---------------------------------------------------------------------------------

B = TypeVar("B", bound=BaseModel)


def validate_body(model: type[B], data: Any) -> B:
    """Validate a decoded JSON body against `model`; SMS.9801 names the first bad field."""
    if data is None:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"]
        if err["type"] == "missing":
            msg = "field required"
        elif err["type"] == "model_type":  # as in JSON terms (Python data would be told "dictionary or instance")
            msg = "Input should be an object"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        raise InvalidRequest(f"{where}: {msg}") from None
