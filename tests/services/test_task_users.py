"""Who tasks run as, and who may ask for which user: real scheduler, master, agents and executors.

A task runs as its app's `user`, else as the framework's `--mesos-user` (nobody by
default); a task with an image and no user as the image's own user. The scheduler
asks its `--acls` (`run_tasks`) whether the caller may run tasks as that user.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from framework.security.bundle import Identity
from framework.security.credentials import Credential, Credentials, Role
from tests.support import images
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess

NOBODY, DAEMON = 65534, 1


def _ids_of(marathon, app: dict) -> tuple[str, Path]:
    """(`uid=... gid=...` the app's one task printed, its sandbox) once it is running."""
    marathon.call("POST", "/v2/apps", {"cpus": 0.1, "mem": 32, "instances": 1, **app})
    deployed = marathon.wait_deployed(app["id"], timeout=60)
    task_id = deployed["tasks"][0]["id"]
    sandbox = marathon.sandbox(task_id)

    def printed() -> str | None:
        lines = [line for line in marathon.stdout(task_id).splitlines() if line.startswith("uid=")]
        return lines[0] if lines else None
    return wait_for(printed, timeout=20, what=f"{app['id']} printing its ids"), sandbox


IDS = "echo uid=$(id -u) gid=$(id -g); exec sleep 600"


def test_a_command_task_without_a_user_runs_as_nobody_in_a_sandbox_of_its_own(marathon) -> None:
    printed, sandbox = _ids_of(marathon, {"id": "/users/default", "cmd": IDS})
    assert printed == f"uid={NOBODY} gid={NOBODY}"
    assert sandbox.stat().st_uid == NOBODY and sandbox.stat().st_mode & 0o007 == 0
    assert marathon.call("GET", "/v2/info")["marathon_config"]["mesos_user"] == "nobody"


def test_a_command_task_runs_as_its_apps_user(marathon) -> None:
    printed, sandbox = _ids_of(marathon, {"id": "/users/daemon", "cmd": IDS, "user": "daemon"})
    assert printed == f"uid={DAEMON} gid={DAEMON}"
    assert sandbox.stat().st_uid == DAEMON


def test_root_runs_as_uid_0_when_the_caller_may(marathon) -> None:
    """The operator may run tasks as any user (the generated ACLs)."""
    printed, _ = _ids_of(marathon, {"id": "/users/root", "cmd": IDS, "user": "root"})
    assert printed == "uid=0 gid=0"


def test_a_container_task_runs_as_its_images_user_unless_the_app_names_one(marathon, cluster) -> None:
    image = "runas:test"
    config = {"User": "1:1"}  # by number: the test image's /etc/passwd knows root and nobody only
    images.busybox_image(config=config).write_docker_archive(cluster.workdir / "images" / f"{image}.tar", image)
    container = {"type": "MESOS", "docker": {"image": image}}
    printed, _ = _ids_of(marathon, {"id": "/users/image", "cmd": IDS, "container": container})
    assert printed == f"uid={DAEMON} gid={DAEMON}"
    printed, sandbox = _ids_of(marathon, {"id": "/users/image-nobody", "cmd": f"touch $MESOS_SANDBOX/mine; {IDS}",
                                          "container": container, "user": "nobody"})
    assert printed == f"uid={NOBODY} gid={NOBODY}"
    assert (sandbox / "mine").stat().st_uid == NOBODY  # the sandbox is the container user's to write


def test_a_user_missing_on_the_agent_fails_the_task_saying_so(marathon) -> None:
    marathon.call("POST", "/v2/apps", {"id": "/users/ghost", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                       "instances": 1, "user": "no-such-user-here", "backoffSeconds": 60})
    failure = marathon.wait_until(lambda: marathon.app("/users/ghost").get("lastTaskFailure"), bool,
                                  "the task failing")
    assert failure["state"] == "TASK_FAILED" and "no-such-user-here" in failure["message"]


def test_the_scheduler_asks_its_acls_who_may_run_tasks_as_whom(cluster, tmp_path: Path) -> None:
    """The generated ACLs: the operator may ask for any user, another admin for any but root;
    refused specs are not stored. Without --acls anyone may ask for anyone."""
    bundle = cluster.bundle
    alice = Identity("alice", "alice-secret")
    users = tmp_path / "users.json"
    users.write_text(json.dumps(Credentials([
        Credential(bundle.operator.principal, bundle.operator.secret, Role.ADMIN),
        Credential(bundle.viewer.principal, bundle.viewer.secret, Role.VIEWER),
        Credential(alice.principal, alice.secret, Role.ADMIN)]).to_json()))
    os.chmod(users, 0o600)
    with SchedulerProcess.start(cluster, tmp_path / "acl", "--name", "dockyard-acls",
                                "--http-users", str(users)) as scheduler:
        as_alice = scheduler.as_(alice)
        app = {"id": "/acl/root", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 0, "user": "root"}
        status, body = as_alice.json("POST", "/v2/apps", app)
        assert status == 403, body
        assert "Principal 'alice' may not run tasks as user 'root'" in body["message"]
        assert body["details"] == [{"path": "/user", "errors": [body["message"].split("! ", 1)[1]]}]
        assert as_alice.json("GET", "/v2/apps/acl/root")[0] == 404
        job = {"id": "acl-root", "run": {"cmd": "id -u", "cpus": 0.1, "mem": 32, "user": "root"}}
        status, body = as_alice.json("POST", "/v1/jobs", job)
        assert status == 403 and body["details"][0]["path"] == "/run/user", body

        assert as_alice.json("POST", "/v2/apps", {**app, "id": "/acl/mine", "user": "daemon"})[0] == 201
        # neither a patch asking for root, nor a rollback to a version of root, nor a group member
        # (force=true: each update may find the previous deployment still running, a 409 otherwise)
        assert as_alice.json("PATCH", "/v2/apps/acl/mine?force=true", {"user": "root"})[0] == 403
        assert scheduler.status("PUT", "/v2/apps/acl/mine?force=true", {"user": "root"})[0] == 200  # the operator may
        root_version = scheduler.call("GET", "/v2/apps/acl/mine")["app"]["version"]
        scheduler.call("PUT", "/v2/apps/acl/mine?force=true", {"user": "daemon"})
        status, body = as_alice.json("PUT", "/v2/apps/acl/mine?force=true", {"version": root_version})
        assert status == 403, body
        status, body = as_alice.json("PUT", "/v2/apps/acl/mine?force=true", {"instances": 0})  # keeps daemon
        assert status == 200, body
        status, body = as_alice.json("POST", "/v2/groups", {"id": "/acl", "apps": [{**app, "id": "grouped"}]})
        assert status == 403 and body["details"][0]["path"] == "/apps(0)/user", body
        # no user: the framework's (nobody), which alice may have
        assert as_alice.json("POST", "/v2/apps", {**app, "id": "/acl/plain", "user": None})[0] == 201
        for app_id in ("acl/mine", "acl/plain"):
            scheduler.call("DELETE", f"/v2/apps/{app_id}?force=true")
