"""The reference server's agent and operator API over real HTTP: commands, task states, views."""

from __future__ import annotations

from sim.model.lifecycle import OsType, Phase, TaskType, subtask_sequence

MIGRATE = subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.MIGRATE)


def test_start_is_delivered_on_every_poll_until_acknowledged(sms):
    source_id = sms.register("web-01")
    assert sms.poll(source_id) == {}
    task_id = sms.create_task(source_id)
    assert sms.task(task_id)["state"] == "READY"
    assert sms.poll(source_id) == {}  # creating a task queues nothing

    sms.action(task_id, "start")
    start = {"command_name": "START", "command_param": {"task_id": task_id}}
    assert sms.poll(source_id, "v3") == start
    assert sms.poll(source_id, "v1") == start  # again, and on the v1 path too
    assert sms.task(task_id)["state"] == "RUNNING"

    sms.ack(source_id, "START")
    assert sms.poll(source_id, "v3") == {}
    assert sms.poll(source_id, "v1") == {}
    assert sms.task(task_id)["state"] == "RUNNING"


def test_progress_moves_subtasks_and_the_last_at_100_completes_the_migration(sms):
    source_id, task_id = sms.running_task()
    sms.progress(task_id, MIGRATE[0], 100)
    sms.call(
        "PUT", f"/v1/sms/tasks/{task_id}/progress", {"subtask_name": MIGRATE[1], "progress": 40, "migrate_speed": 2.5}
    )
    task = sms.task(task_id)
    assert task["state"] == "RUNNING"
    assert task["subtask_info"] == f"{MIGRATE[1]}:40"
    assert [s["progress"] for s in task["sub_tasks"][:3]] == [100, 40, 0]
    assert task["migrate_speed"] == 20.0  # v1 MByte/s shown as Mbit/s
    assert sms.source(source_id)["current_task"]["subtask_info"] == f"{MIGRATE[1]}:40"

    for subtask in MIGRATE[1:]:
        sms.progress(task_id, subtask, 100)
    task = sms.task(task_id)
    assert task["state"] == "MIGRATE_SUCCESS"
    assert task["subtask_info"] == f"{MIGRATE[-1]}:100"
    assert all(s["progress"] == 100 and isinstance(s["end_date"], int) for s in task["sub_tasks"])
    assert isinstance(task["create_date"], int) and task["create_date"] <= task["start_date"] <= task["finish_date"]
    assert sms.poll(source_id) == {}


def test_progress_going_down_is_rejected(sms):
    _, task_id = sms.running_task()
    sms.progress(task_id, MIGRATE[0], 60)
    error = sms.progress(task_id, MIGRATE[0], 30, expect=400)
    assert error["error_code"] == "SMS.9805"
    assert sms.task(task_id)["subtask_info"] == f"{MIGRATE[0]}:60"


def test_sync_queues_sync_and_its_last_subtask_completes_it(sms):
    source_id, task_id = sms.running_task()
    for subtask in MIGRATE:
        sms.progress(task_id, subtask, 100)
    sms.action(task_id, "sync")
    assert sms.poll(source_id) == {"command_name": "SYNC", "command_param": {"task_id": task_id}}
    assert sms.task(task_id)["state"] == "SYNCING"
    sms.ack(source_id, "SYNC")
    sync_subtask = subtask_sequence(TaskType.MIGRATE_FILE, OsType.LINUX, Phase.SYNC)[-1]
    sms.progress(task_id, sync_subtask, 100)
    assert sms.task(task_id)["state"] == "SYNC_SUCCESS"


def test_log_collection_queues_upload_log_with_bucket_and_object(sms):
    source_id, task_id = sms.running_task()
    sms.call("POST", f"/v3/tasks/{task_id}/log", {"log_bucket": "logbucket"})
    assert sms.task(task_id)["log_collect_status"] == "INIT"
    command = sms.poll(source_id)
    assert command["command_name"] == "UPLOAD_LOG"
    assert command["command_param"]["bucket"] == "logbucket"
    assert command["command_param"]["object"]
    assert sms.task(task_id)["log_collect_status"] == "UPLOADING"
    sms.ack(source_id, "UPLOAD_LOG")
    task = sms.task(task_id)
    assert task["log_collect_status"] == "UPLOADED"
    assert task["state"] == "RUNNING"


def test_delete_of_a_running_task_is_sms_2015_and_stop_then_delete_completes_on_acknowledgement(sms):
    source_id, task_id = sms.running_task()
    error = sms.call("DELETE", f"/v3/tasks/{task_id}", expect=400)
    assert error["error_code"] == "SMS.2015"
    assert sms.task(task_id)["state"] == "RUNNING"
    assert sms.poll(source_id) == {}

    sms.action(task_id, "stop")
    assert sms.task(task_id)["state"] == "ABORTING"
    assert sms.poll(source_id)["command_name"] == "STOP"
    sms.ack(source_id, "STOP")
    assert sms.task(task_id)["state"] == "ABORT"

    assert sms.call("DELETE", f"/v3/tasks/{task_id}") == {}
    assert sms.task(task_id)["state"] == "DELETING"
    assert sms.poll(source_id) == {"command_name": "DELETE", "command_param": {"task_id": task_id}}
    sms.ack(source_id, "DELETE")
    assert sms.call("GET", f"/v3/tasks/{task_id}", expect=404)["error_code"] == "SMS.9802"
    assert sms.source(source_id)["current_task"] is None


def test_result_for_a_command_that_is_not_pending_is_sms_2009_and_changes_nothing(sms):
    source_id = sms.register()
    task_id = sms.create_task(source_id)
    sms.action(task_id, "start")
    error = sms.ack(source_id, "STOP", expect=400)
    assert error["error_code"] == "SMS.2009"
    assert sms.ack(source_id, "RSET_LOG_ACL", expect=400)["error_code"] == "SMS.2009"
    assert sms.poll(source_id)["command_name"] == "START"
    assert sms.task(task_id)["state"] == "RUNNING"


def test_a_failure_reported_with_nothing_pending_fails_the_migration_and_restart_runs_again(sms):
    source_id, task_id = sms.running_task()
    sms.ack(source_id, "START", result="fail")
    assert sms.task(task_id)["state"] == "MIGRATE_FAIL"
    sms.action(task_id, "restart")
    assert sms.poll(source_id)["command_name"] == "START"
    assert sms.task(task_id)["state"] == "RUNNING"


def test_illegal_and_unsimulated_actions(sms):
    _, task_id = sms.running_task()
    assert sms.action(task_id, "restart", expect=400)["error_code"] == "SMS.1040"
    error = sms.action(task_id, "clone_test", expect=400)
    assert error["error_code"] == "SMS.9801" and "not simulated" in error["error_msg"]
    error = sms.action(task_id, "teleport", expect=400)
    assert error["error_code"] == "SMS.9801" and "operation" in error["error_msg"]
    assert sms.task(task_id)["state"] == "RUNNING"


def test_task_for_a_source_that_does_not_exist_is_sms_2216(sms):
    body = {"name": "t", "type": "MIGRATE_FILE", "source_server": {"id": "no-such-source"}}
    assert sms.call("POST", "/v3/tasks", body, expect=400)["error_code"] == "SMS.2216"


def test_source_view_and_lists(sms):
    source_id = sms.register("view-src", gib=3)
    source = sms.source(source_id)
    assert source["name"] == "view-src" and source["connected"] is True
    assert source["totalsize"] == 3 << 30
    assert isinstance(source["last_visit_time"], int)
    assert source["current_task"] is None
    task_id = sms.create_task(source_id, name="view-task")
    current = sms.source(source_id)["current_task"]
    assert {k: current[k] for k in ("id", "name", "type", "state")} == {
        "id": task_id,
        "name": "view-task",
        "type": "MIGRATE_FILE",
        "state": "READY",
    }

    listed = sms.call("GET", "/v3/sources", params={"name": "view-src"})
    assert listed["count"] == 1 and listed["source_servers"][0]["id"] == source_id
    assert sms.call("GET", "/v3/sources", params={"id": source_id, "connected": "false"})["count"] == 0
    assert sms.call("GET", "/v3/sources", params={"limit": 1})["source_servers"].__len__() == 1

    tasks = sms.call("GET", "/v3/tasks", params={"source_server_id": source_id})
    assert tasks["count"] == 1 and tasks["tasks"][0]["source_server"] == {"id": source_id, "name": "view-src"}
    assert sms.call("GET", "/v3/tasks", params={"id": task_id, "state": "READY"})["count"] == 1
    assert sms.call("GET", "/v3/tasks", params={"id": task_id, "state": "RUNNING"})["count"] == 0
    assert sms.call("GET", "/v3/tasks", params={"state": "SYNC_F_ROLLBACKING"})["count"] == 0
    assert sms.call("GET", "/v3/tasks", params={"state": "FLYING"}, expect=400)["error_code"] == "SMS.9801"
    assert sms.call("GET", "/v3/tasks", params={"limit": "-1"}, expect=400)["error_code"] == "SMS.9801"
    assert sms.call("GET", "/v3/sources", params={"offset": "9" * 30}, expect=400)["error_code"] == "SMS.9801"
