from types import SimpleNamespace

from scheduler.services.instance_events import failure_message as _failure_message


def test_an_oom_kill_says_so_in_last_task_failure():
    record = SimpleNamespace(message="Memory limit exceeded: 64 MB",
                             reason="REASON_CONTAINER_LIMITATION_MEMORY")
    assert _failure_message(record) == ("Memory limit exceeded: 64 MB "
                                        "(out of memory: REASON_CONTAINER_LIMITATION_MEMORY)")
    plain = SimpleNamespace(message="Command exited with status 3", reason="REASON_COMMAND_EXECUTOR_FAILED")
    assert _failure_message(plain) == "Command exited with status 3"


def test_a_killed_process_is_not_reported_with_the_last_health_update_reason():
    """Regression: a TASK_RUNNING health update carries REASON_TASK_HEALTH_CHECK_STATUS_UPDATED; a
    later TASK_FAILED without a reason (its process was killed) used to keep that reason, so
    lastTaskFailure read like a health-check kill of the wrong instance."""
    from scheduler.tasks import State, TaskRecord

    record = TaskRecord("web.instance-1", "app:/web", "web", state=State.RUNNING)
    record.apply_status({"state": "TASK_RUNNING", "healthy": True, "message": "HTTP 200 from http://x/",
                         "reason": "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"}, 1.0)
    assert record.reason == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"
    record.apply_status({"state": "TASK_FAILED", "message": "Command terminated with signal SIGKILL"}, 2.0)
    assert record.reason is None
    assert _failure_message(record) == "Command terminated with signal SIGKILL"
