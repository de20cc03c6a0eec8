"""Secrets end to end: real master, agent, executors, runc containers and scheduler processes.

A random value is stored with `dockyard secret put`, then given to an app (an
environment variable and a file, in a container; an environment variable on the
host) and to a job. Each task prints a hash of what it received. Then every API
answer the test saw, the event streams, every log, store and sandbox file under
the work dirs are searched for the value and its base64 forms: none may hold them.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.support.cluster import Cluster
from tests.support.procs import dockyard, wait_for
from tests.support.scheduler import SchedulerProcess

IMAGE = "busybox:secrets"
SHA = 'printf %s "$DB_PW" | sha256sum | cut -d" " -f1'
# Every environment this task may read, one hash per NAME=value line: what other tasks can see.
OBSERVE = ('for f in /proc/[0-9]*/environ; do tr "\\0" "\\n" < "$f" 2>/dev/null; echo; done | '
           'while IFS= read -r line; do printf %s "$line" | sha256sum | cut -d" " -f1; done | sort -u; sleep 600')


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(raw).rstrip(b"="), base64.urlsafe_b64encode(raw).rstrip(b"=")]


@dataclass
class World:
    workdir: Path
    cluster: Cluster
    scheduler: SchedulerProcess
    answers: list[bytes] = field(default_factory=list)  # every API answer the test saw

    def cli(self, *args: str, value: str | None = None) -> str:
        result = subprocess.run(dockyard(*args, "--config", str(self.scheduler.client_file)),
                                input=value.encode() if value is not None else None, capture_output=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr.decode()
        self.answers.append(result.stdout + result.stderr)
        return result.stdout.decode()

    def get(self, path: str) -> Any:
        status, _, raw = self.scheduler.api.call("GET", path)
        self.answers.append(raw)
        assert status == 200, (path, status, raw[:300])
        return json.loads(raw)

    def stdout(self, task_id: str) -> str:
        found = list((self.cluster.workdir / "agent0").rglob(f"tasks/{task_id}/stdout"))
        return found[0].read_text() if found else ""

    def output(self, task_id: str, lines: int) -> list[str]:
        """The task's first `lines` lines of stdout, once it has printed them."""
        def printed() -> list[str] | None:
            found = self.stdout(task_id).splitlines()
            return found[:lines] if len(found) >= lines else None
        return wait_for(printed, timeout=30, what=f"{task_id} printed {lines} line(s)")  # type: ignore[return-value]

    def running(self, app_id: str, count: int = 1) -> list[dict]:
        return self.scheduler.wait_until(
            lambda: [t for t in self.get(f"/v2/apps{app_id}")["app"]["tasks"] if t["state"] == "TASK_RUNNING"],
            lambda tasks: len(tasks) >= count, f"{app_id} running", timeout=90)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("secrets")
    images = workdir / "images"
    images.mkdir()
    subprocess.run(dockyard("image", "build", "--busybox", "--tag", IMAGE, "--output", str(images / f"{IMAGE}.tar")),
                   check=True, capture_output=True, timeout=120)
    with Cluster(workdir / "cluster", agents=1, agent_args=["--docker-registry", str(images)]).start() as cluster:
        with SchedulerProcess.start(cluster, workdir / "scheduler") as scheduler:
            yield World(workdir, cluster, scheduler)


class Capture:
    """A streaming answer read on a thread until `stop()`: an event stream's every byte."""

    def __init__(self, client: Any, method: str, path: str, **options: Any) -> None:
        self.data = bytearray()
        self.opened = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(client, method, path, options), daemon=True)
        self.thread.start()
        assert self.opened.wait(10), f"{path} did not answer"

    def _read(self, client: Any, method: str, path: str, options: dict) -> None:
        try:
            with client, client.stream(method, path, timeout=None, **options) as response:
                self.opened.set()
                for chunk in response.iter_bytes():
                    self.data += chunk
                    if self.done.is_set():
                        return
        except httpx.HTTPError:  # the server went away (the module's cluster stops): what came is kept
            pass

    def stop(self) -> bytes:
        self.done.set()
        return bytes(self.data)


def tmpfs_mounts() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            parts = line.split()
            if parts[parts.index("-") + 1] == "tmpfs":
                points.add(parts[4])
    return points


def files_holding(root: Path, needles: list[bytes], skip_tmpfs: bool = False) -> list[str]:
    """Every file under `root` that holds one of `needles` (tmpfs mounts left out when asked)."""
    skipped = tmpfs_mounts() if skip_tmpfs else set()
    found = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in skipped]
        for name in files:
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if any(needle in data for needle in needles):
                found.append(path)
    return found


def test_a_secret_reaches_its_tasks_and_nothing_else(world: World) -> None:
    value, later = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    needles = forms(value) + forms(later)
    assert "version 1" in world.cli("secret", "put", "e2e/db-password", value=value)
    streams = [Capture(world.scheduler.api.client(), "GET", "/v2/events", headers={"Accept": "text/event-stream"}),
               Capture(world.cluster.master_api().client(), "POST", "/api/v1", json={"type": "SUBSCRIBE"},
                       headers={"Accept": "application/json"})]
    uses = {"env": {"DB_PW": {"secret": "pw"}, "PLAIN": "x"}, "secrets": {"pw": {"source": "e2e/db-password"}}}
    container = {"id": "/secret/container", "cpus": 0.1, "mem": 32, **uses,
                 "cmd": f'{SHA}; sha256sum < $MESOS_SANDBOX/private/pw | cut -d" " -f1; '
                        f'stat -c "%a %u" $MESOS_SANDBOX/private/pw; stat -f -c %T $MESOS_SANDBOX/private/pw; sleep 600',
                 "container": {"type": "MESOS", "docker": {"image": IMAGE},
                               "volumes": [{"containerPath": "private/pw", "secret": "pw"}]}}
    host = {"id": "/secret/host", "cpus": 0.1, "mem": 32, **uses, "cmd": f"{SHA}; sleep 600"}
    mark = secrets.token_hex(8)
    observers = [{"id": "/secret/observer-container", "cpus": 0.1, "mem": 32, "env": {"MARK": mark},
                  "cmd": OBSERVE, "container": {"type": "MESOS", "docker": {"image": IMAGE}}},
                 {"id": "/secret/observer-host", "cpus": 0.1, "mem": 32, "env": {"MARK": mark}, "user": "daemon",
                  "cmd": OBSERVE}]
    for app in (container, host):
        status, body = world.scheduler.status("POST", "/v2/apps", app)
        world.answers.append(json.dumps(body).encode())
        assert status == 201, body
    job = {"id": "secret-job", "run": {"cmd": f"{SHA}", "cpus": 0.1, "mem": 32, "env": {"DB_PW": {"secret": "pw"}},
                                       "secrets": {"pw": {"source": "/e2e/db-password"}}}}
    assert world.scheduler.status("POST", "/v1/jobs", job)[0] == 201
    run = world.scheduler.call("POST", "/v1/jobs/secret-job/runs")
    # What each task received, as it says (a hash): env and file in a container, env on the host and in a job.
    [task] = world.running("/secret/container")
    env_hash, file_hash, owner, fs = world.output(task["id"], 4)
    assert env_hash == file_hash == sha(value)
    assert (owner, fs) == ("400 0", "tmpfs"), "0400, the task's user's (root in busybox), on a tmpfs"
    [host_task] = world.running("/secret/host")
    assert world.output(host_task["id"], 1)[0] == sha(value)
    finished = world.scheduler.wait_until(lambda: world.get(f"/v1/jobs/secret-job/runs/{run['id']}"),
                                          lambda r: r["status"] in ("SUCCESS", "FAILED"), "the job run", 60)
    assert finished["status"] == "SUCCESS", finished
    [job_task] = finished["tasks"]
    assert world.output(job_task["id"], 1)[0] == sha(value)
    # Other tasks' /proc/*/environ: a container (its own PID namespace) and a host task of another user
    # (the secret's tasks run as nobody, the framework's user).
    for app in observers:
        world.scheduler.call("POST", "/v2/apps", app)
    for app in observers:
        [watcher] = world.running(app["id"])
        seen = set(world.output(watcher["id"], 3)) | set(world.stdout(watcher["id"]).splitlines())
        assert sha(f"MARK={mark}") in seen, "the observer reads its own environment"
        assert sha(f"DB_PW={value}") not in seen, f"{app['id']} read another task's secret"
    # While the tasks run: the value is nowhere on disk but in the tasks' own tmpfs.
    assert not files_holding(world.workdir, needles, skip_tmpfs=True)
    # A new version reaches new instances at the next restart; `app show` says which one each has.
    assert "version 2" in world.cli("secret", "put", "e2e/db-password", value=later)
    shown = world.cli("app", "show", "/secret/container")
    assert "e2e/db-password" in shown and task["id"] in shown
    usage = world.get("/dockyard/v1/secrets/usage?appId=/secret/container")["tasks"]
    assert [(t["taskId"], t["secrets"]) for t in usage] == [(task["id"], {"e2e/db-password": 1})]
    world.cli("app", "restart", "/secret/container")
    replaced = world.scheduler.wait_until(
        lambda: [t for t in world.get("/v2/apps/secret/container")["app"]["tasks"]
                 if t["id"] != task["id"] and t["state"] == "TASK_RUNNING"], bool, "a new instance", 90)
    assert world.output(replaced[0]["id"], 2)[:2] == [sha(later), sha(later)]
    usage = {t["taskId"]: t["secrets"] for t in world.get("/dockyard/v1/secrets/usage?appId=/secret/container")["tasks"]}
    assert usage[replaced[0]["id"]] == {"e2e/db-password": 2}
    # Every view the APIs give of it all.
    for path in ("/v2/apps?embed=apps.tasks&embed=apps.lastTaskFailure", "/v2/apps/secret/container", "/v2/tasks",
                 "/v2/deployments", "/v2/queue", "/v2/groups", "/v1/jobs?embed=activeRuns&embed=history",
                 "/v1/jobs/secret-job/runs", "/secrets/v1/secret/default?list=true",
                 "/secrets/v1/secret/default/e2e/db-password", "/openapi.json"):
        world.get(path)
    master, agent = world.cluster.master_api(), world.cluster.agent_api()
    for endpoint, path in ((master, "/state"), (master, "/master/state"), (master, "/tasks"), (master, "/master/tasks"),
                           (agent, "/state"), (agent, "/slave(1)/state")):
        world.answers.append(endpoint.call("GET", path)[2])
    for call in ("GET_STATE", "GET_TASKS", "GET_EXECUTORS", "GET_FRAMEWORKS"):
        status, _, raw = master.call("POST", "/api/v1", {"type": call}, headers={"Accept": "application/json"})
        assert status == 200, raw[:200]
        world.answers.append(raw)
    assert b"***" in b"".join(world.answers), "the master shows a marker where a secret volume's bytes were"
    world.answers += [world.cli("secret", "ls").encode(), world.cli("secret", "ls", "--json").encode()]
    for app_id in ("/secret/container", "/secret/host", *(o["id"] for o in observers)):
        world.scheduler.call("DELETE", f"/v2/apps{app_id}?force=true")
    wait_for(lambda: not world.get("/v2/tasks")["tasks"], timeout=60, what="every task ended")
    world.answers += [stream.stop() for stream in streams]
    assert b"status_update_event" in world.answers[-2] and b"TASK_ADDED" in world.answers[-1]
    held = [answer[:200] for answer in world.answers if any(needle in answer for needle in needles)]
    assert not held, held
    # Logs of every component, the scheduler's store, sandboxes and the agent's work dir, after it all.
    logs = [p for p in world.workdir.rglob("*.log")]
    assert any(p.name == "scheduler.log" for p in logs) and any(p.name.startswith("agent") for p in logs)
    assert not files_holding(world.workdir, needles)
    assert files_holding(world.workdir, [sha(value).encode()]), "the search reaches the sandboxes"
    assert b"e2e/db-password" in b"".join(world.answers), "the answers searched are about the secret"


def test_specs_and_callers_are_checked(world: World) -> None:
    world.cli("secret", "put", "checks/one", value="v")
    app = {"id": "/secret/bad", "cmd": "sleep 60", "cpus": 0.1, "mem": 32, "env": {"X": {"secret": "s"}},
           "secrets": {"s": {"source": "checks/missing"}}}
    status, body = world.scheduler.status("POST", "/v2/apps", app)
    assert status == 422 and body["details"][0]["path"] == "/secrets/s/source"
    assert "checks/missing" in body["details"][0]["errors"][0]
    status, body = world.scheduler.status("POST", "/v2/apps", {**app, "secrets": {}})
    assert status == 422 and body["details"] == [{"path": "/env/X", "errors": ["references an undefined secret 's'"]}]
    viewer = world.scheduler.as_(world.cluster.bundle.viewer)
    assert viewer.json("PUT", "/secrets/v1/secret/default/checks/one", {"value": "x"})[0] == 403
    status, meta = viewer.json("GET", "/secrets/v1/secret/default/checks/one")
    assert status == 200 and meta["version"] == 1 and meta["createdBy"] == "operator" and "value" not in meta
    assert world.scheduler.as_(None).json("GET", "/secrets/v1/secret/default/checks/one")[0] == 401
    world.cli("secret", "rm", "checks/one")
    assert world.scheduler.status("GET", "/secrets/v1/secret/default/checks/one")[0] == 404


def test_key_rotation_keeps_every_secret(world: World) -> None:
    value = secrets.token_urlsafe(16)
    world.cli("secret", "put", "rotate/me", value=value)
    key_file = world.cluster.bundle.secrets_key_file
    before = key_file.read_text()
    result = json.loads(world.cli("secret", "rotate-key", "--generate", "--prune", "--json"))
    assert result["rotated"] >= 1 and result["pruned"] and key_file.read_text() != before
    listed = json.loads(world.cli("secret", "ls", "--json"))
    assert {m["key"] for m in listed} == {result["key"]}
    job = {"id": "rotated", "run": {"cmd": SHA, "cpus": 0.1, "mem": 32, "env": {"DB_PW": {"secret": "pw"}},
                                    "secrets": {"pw": {"source": "rotate/me"}}}}
    world.scheduler.call("POST", "/v1/jobs", job)
    run = world.scheduler.call("POST", "/v1/jobs/rotated/runs")
    done = world.scheduler.wait_until(lambda: world.get(f"/v1/jobs/rotated/runs/{run['id']}"),
                                      lambda r: r["status"] in ("SUCCESS", "FAILED"), "the run", 60)
    assert done["status"] == "SUCCESS" and world.output(done["tasks"][0]["id"], 1)[0] == sha(value)
