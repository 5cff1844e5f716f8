"""JSON views of the control plane's records, shaped like the SMS API's responses.

Times in the records are epoch seconds (floats); the API shows them as integer epoch
milliseconds, and a time that has not happened yet as null.
"""

from __future__ import annotations

from typing import Any

from sim.model.entities import CommandRecord, Source, Task, TaskEvent

# A source's public `state` (the SMS source-server states) follows its current task's state;
# with no task it is `waiting`. The success states show `finished`: the reference server has no
# cutover, so a migrated (or synced) source has nothing more to do.
SOURCE_STATE_OF_TASK = {
    "READY": "waiting",
    "RUNNING": "replicate",
    "SYNCING": "syncing",
    "MIGRATE_SUCCESS": "finished",
    "SYNC_SUCCESS": "finished",
    "MIGRATE_FAIL": "error",
    "SYNC_FAIL": "error",
    "ABORTING": "stopping",
    "ABORT": "stopped",
    "DELETING": "deleting",
}


def source_state(src: Source, task: Task | None) -> str:
    """The source's public state: its task's, as the SMS source states name it."""
    return src.state if task is None else SOURCE_STATE_OF_TASK.get(task.state.value, src.state)


def epoch_ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


def task_brief(task: Task) -> dict[str, Any]:
    """The `current_task` of a source server (TaskByServerSource)."""
    return {
        "id": task.id,
        "name": task.name,
        "type": task.type.value,
        "state": task.state.value,
        "log_collect_status": task.log_collect_status.value if task.log_collect_status else None,
        "subtask_info": task.subtask_info,
        "start_date": epoch_ms(task.start_date),
    }


def task_view(task: Task, source_name: str, connected: bool | None) -> dict[str, Any]:
    """A task as ShowTask and ListTasks return it (reference 2.3 and 2.4)."""
    doc: dict[str, Any] = {
        # The PostTask fields the reference server keeps but does not act on (region, target, ...).
        **task.extra,
        "id": task.id,
        "name": task.name,
        "type": task.type.value,
        "os_type": task.os_type.value,
        "state": task.state.value,
        "priority": task.extra.get("priority", 1),
        "log_collect_status": task.log_collect_status.value if task.log_collect_status else None,
        "create_date": epoch_ms(task.create_date),
        "start_date": epoch_ms(task.start_date),
        "finish_date": epoch_ms(task.finish_date),
        "migrate_speed": task.migrate_speed,
        "remain_seconds": task.remain_seconds,
        "replicatesize": task.replicatesize,
        "totalsize": task.totalsize,
        "process_trace": task.process_trace,
        "connected": connected,
        "source_server": {"id": task.source_id, "name": source_name},
        "subtask_info": task.subtask_info,
        "sub_tasks": [
            {
                "id": s.id,
                "name": s.name,
                "progress": s.progress,
                "start_date": epoch_ms(s.start_date),
                "end_date": epoch_ms(s.end_date),
            }
            for s in task.sub_tasks
        ],
    }
    return doc


def source_view(src: Source, task: Task | None) -> dict[str, Any]:
    """A source server as ShowServer and ListServers return it."""
    return {
        # Optional registration fields the agent sent (cpu_quantity, memory, firmware, ...).
        **src.extra,
        "id": src.id,
        "name": src.name,
        "hostname": src.hostname,
        "ip": src.ip,
        "os_type": src.os_type.value,
        "os_version": src.os_version,
        "agent_version": src.agent_version,
        "state": source_state(src, task),
        "connected": src.connected,
        "add_date": epoch_ms(src.registered_at),
        "last_visit_time": epoch_ms(src.last_visit_time),
        "totalsize": src.total_bytes,
        "replicatesize": task.replicatesize if task is not None else 0,
        "current_task": task_brief(task) if task is not None else None,
    }


def event_doc(event: TaskEvent) -> dict[str, Any]:
    """A task transition as the reference server exports it (`t` in epoch seconds)."""
    return {
        "t": event.t,
        "task_id": event.task_id,
        "source_id": event.source_id,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "trigger": event.trigger,
        "subtask": event.subtask,
        "progress": event.progress,
    }


def command_doc(command: CommandRecord) -> dict[str, Any]:
    """A queued command and its dispatch times as the reference server exports it (epoch seconds)."""
    return {
        "seq": command.seq,
        "source_id": command.source_id,
        "task_id": command.task_id,
        "command_name": command.name.value,
        "param": command.param,
        "enqueued_at": command.enqueued_at,
        "delivered_at": command.delivered_at,
        "acked_at": command.acked_at,
        "result": command.result,
    }
