"""The executor's token is the executor's alone: no task inherits it, reads it, or finds it on disk.

First the driver on its own, in a fresh process started with the token in its
environment, as an agent starts an executor; then real tasks on a real agent with
executor authentication on: a command task, a warm executor's task and a task in
an image each print their environment, try their parent's `/proc/<pid>/environ`
and search their sandbox, and the agent's whole work dir is searched too.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from framework.security.bundle import Bundle
from tests.support.cluster import Cluster
from tests.support.framework import RawFramework, command_task
from tests.support.procs import REPO, dockyard, wait_for
from tests.support.security import executor_token

from .agent_support import executor_info, grep_tree, task_for

TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJjaWQiOiJjIn0.c2VjcmV0LXRva2VuLXZhbHVlLXh5eg"

PROBE = r'''
import json, os, posix, subprocess, sys
from framework.mesos.executor import MesosExecutorDriver
from framework.mesos.interface import Executor

driver = MesosExecutorDriver(Executor())
token = sys.argv[1]
child = subprocess.run(["/bin/sh", "-c", "env; cat /proc/$PPID/environ | tr '\\0' '\\n'"],
                       capture_output=True, text=True).stdout
with open("/proc/self/environ", "rb") as handle:
    block = handle.read()
print(json.dumps({
    "os_environ": token in os.environ.get("MESOS_EXECUTOR_AUTHENTICATION_TOKEN", ""),
    "named": "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" in os.environ,
    "posix_environ": token.encode() in b"".join(posix.environ.values()),
    "proc_self": token.encode() in block,
    "proc_self_has_others": b"MESOS_EXECUTOR_ID=probe" in block,
    "child": token in child,
    "header": driver._headers.get("Authorization") == "Bearer " + token,
}))
'''


def probe_env(**extra: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "MESOS_AGENT_ENDPOINT": "127.0.0.1:1",
            "MESOS_FRAMEWORK_ID": "f", "MESOS_EXECUTOR_ID": "probe",
            "MESOS_EXECUTOR_AUTHENTICATION_TOKEN": TOKEN, **extra}


def test_the_driver_takes_the_token_out_of_its_process_environment(tmp_path: Path) -> None:
    """As the agent starts it: the token in the exec-time environment block, then gone from every view."""
    done = subprocess.run([sys.executable, "-c", PROBE, TOKEN], env=probe_env(), capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"os_environ": False, "named": False, "posix_environ": False, "proc_self": False,
                    "proc_self_has_others": True, "child": False, "header": True}


def test_a_token_set_after_exec_is_scrubbed_from_the_stack_block_too(tmp_path: Path) -> None:
    """The variable's exec-time value differs from its current one: both are scrubbed."""
    script = ("import os, sys; os.environ['MESOS_EXECUTOR_AUTHENTICATION_TOKEN'] = sys.argv[1]\n"
              + PROBE.replace("token = sys.argv[1]", "token = sys.argv[1]\nold = sys.argv[2]"))
    script = script.replace('"header":', '"old_in_block": old.encode() in block,\n    "header":')
    done = subprocess.run([sys.executable, "-c", script, TOKEN + "-new", TOKEN],
                          env=probe_env(), capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["header"] and not seen["child"] and not seen["os_environ"]
    # The new value lived on the heap (unset now); the block the kernel shows held the old one: gone too.
    assert not seen["old_in_block"]


# -- real tasks ---------------------------------------------------------------------------------

# Every executor token starts with the same JWT header (base64url of {"alg":"HS256","typ":"JWT"}).
JWT_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
REPORT = ("echo ENV; env; echo PARENT; echo PPID=$PPID; tr '\\0' '\\n' < /proc/$PPID/environ; echo SEARCH; "
          f"grep -rl {JWT_HEADER} . /proc/[0-9]*/environ 2>/dev/null; echo END")


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`busybox:test.tar` for tasks in an image (tests/containers/test_e2e_cluster.py builds it the same way)."""
    directory = tmp_path_factory.mktemp("archives")
    root = tmp_path_factory.mktemp("rootfs")
    (root / "etc").mkdir()
    built = subprocess.run(dockyard("image", "build", "--tag", "busybox:test", "--busybox", "--from-rootfs",
                                    str(root), "--cmd", "/bin/sh", "--output", str(directory / "busybox:test.tar")),
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    return directory


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, archives: Path) -> Iterator[tuple[Cluster, Bundle]]:
    with Cluster(Path(tmp_path_factory.mktemp("cluster")), agents=1,
                 agent_args=["--docker-registry", str(archives)]).start() as cluster:
        assert cluster.bundle is not None
        yield cluster, cluster.bundle


def sections(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line in ("ENV", "PARENT", "SEARCH", "END"):
            current = line
            found[line] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def test_no_task_sees_its_executors_token(secured: tuple[Cluster, Bundle]) -> None:
    cluster, bundle = secured
    framework = RawFramework(cluster.master_api()).start()
    try:
        image = {"type": "MESOS", "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:test"}}}}
        warm = executor_info("warm-scrub", argv=dockyard("executor"), env={"DOCKYARD_EXECUTOR_IDLE_TIMEOUT": "30"})
        framework.launch(framework.offer(), [
            command_task(REPORT + "; sleep 30", task_id="command-scrub"),
            task_for(warm, "warm-task", REPORT + "; sleep 30"),
            command_task("echo ENV; env; echo END; sleep 30", task_id="image-scrub", mem=64, container=image),
        ])
        for task_id in ("command-scrub", "warm-task", "image-scrub"):
            framework.wait_state(task_id, "TASK_RUNNING", timeout=60)
        command = cluster.executor("command-scrub", framework.framework_id)
        warm_exec = cluster.executor("warm-scrub", framework.framework_id)
        image_exec = cluster.executor("image-scrub", framework.framework_id)
        outputs = {
            "command-scrub": (Path(command["directory"]) / "stdout", executor_token(bundle, command)),
            "warm-task": (Path(warm_exec["directory"]) / "tasks" / "warm-task" / "stdout",
                          executor_token(bundle, warm_exec)),
            "image-scrub": (Path(image_exec["directory"]) / "stdout", executor_token(bundle, image_exec)),
        }
        for task_id, (stdout, token) in outputs.items():
            text = wait_for(lambda: (stdout.exists() and "END" in stdout.read_text()) and stdout.read_text(), 30,
                            what=f"{task_id}'s report")
            parts = sections(text)  # type: ignore[arg-type]
            assert token not in text, task_id
            assert "MESOS_EXECUTOR_AUTHENTICATION_TOKEN" not in parts["ENV"], task_id
            if task_id != "image-scrub":
                if parts["PARENT"].startswith("PPID=0\n"):
                    # The task's own PID namespace (namespaces/pid, the default) hides its executor.
                    assert parts["PARENT"] == "PPID=0\n", (task_id, parts["PARENT"])
                else:  # the read of the executor's environment worked; the token's value is not in it
                    assert f"MESOS_EXECUTOR_ID={task_id if task_id != 'warm-task' else 'warm-scrub'}" in parts["PARENT"]
                assert parts["SEARCH"].strip() == "", (task_id, parts["SEARCH"])
        tokens = [token for _, token in outputs.values()]
        work_dir = cluster.workdir / "agent0"
        for token in tokens:
            assert grep_tree(work_dir, token.encode()) == []
        for task_id in outputs:
            framework.kill(task_id)
        for task_id in outputs:
            framework.wait_terminal(task_id, timeout=30)
    finally:
        framework.stop()
