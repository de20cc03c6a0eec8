from types import SimpleNamespace

from scheduler.services.manager import _failure_message


def test_an_oom_kill_says_so_in_last_task_failure():
    record = SimpleNamespace(message="Memory limit exceeded: 64 MB",
                             reason="REASON_CONTAINER_LIMITATION_MEMORY")
    assert _failure_message(record) == ("Memory limit exceeded: 64 MB "
                                        "(out of memory: REASON_CONTAINER_LIMITATION_MEMORY)")
    plain = SimpleNamespace(message="Command exited with status 3", reason="REASON_COMMAND_EXECUTOR_FAILED")
    assert _failure_message(plain) == "Command exited with status 3"
