"""`dockyard app deploy --build DIR app.json` and `job run --build`: from a Dockerfile to a
running app and a finished job on a real `dockyard up` cluster, with the image pinned by digest
(a rebuild after a change is a new version)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.local.test_up import consecutive_free_ports
from tests.local.test_up_lifecycle import down
from tests.support.procs import Process, dockyard, free_port, wait_for

DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY hello.txt /hello.txt
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("built") / "cluster"
    agent = consecutive_free_ports(1)
    up = Process(dockyard("up", "--agents", "1", "--work-dir", str(work), "--master-port", str(free_port()),
                          "--agent-port", str(agent), "--scheduler-port", str(free_port()),
                          "--resources", "cpus:2;mem:1024;disk:1000;ports:[21400-21420]"),
                 work.parent / "up.log", env={"COLUMNS": "200"})
    try:
        wait_for(lambda: "cluster up" in up.output(), 90, what="`up` to say the cluster is up")
        yield work
    finally:
        down(work)
        up.stop()


def cli(work: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(dockyard(*args), capture_output=True, text=True, timeout=timeout, cwd=work.parent,
                          env={"DOCKYARD_CONFIG": str(work / "client.json"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def context(directory: Path, greeting: str) -> Path:
    directory.mkdir(exist_ok=True)
    shutil.copy("/bin/busybox", directory / "busybox")
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "hello.txt").write_text(greeting + "\n")
    return directory


def test_an_app_is_built_deployed_and_rebuilt_as_a_new_version(cluster: Path, tmp_path: Path) -> None:
    source = context(tmp_path / "web", "hello from the build")
    spec = tmp_path / "app.json"
    spec.write_text(json.dumps({"id": "/built/web", "cpus": 0.1, "mem": 32, "instances": 1,
                                "cmd": "cat /hello.txt; exec sleep 600"}))
    first = cli(cluster, "app", "deploy", "--build", str(source), str(spec))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Step 1/4 : FROM scratch" in first.stderr  # the build's progress, as it happened
    shown = json.loads(cli(cluster, "app", "show", "/built/web", "--json").stdout)
    image = shown["container"]["docker"]["image"]
    assert image.startswith("docker.io/built/web:latest@sha256:"), image  # normalised, pinned
    task = shown["tasks"][0]["id"]
    logs = wait_for(lambda: "hello from the build" in cli(cluster, "task", "logs", task).stdout, 30,
                    what="the task to print the file its image holds")
    assert logs
    (source / "hello.txt").write_text("hello again\n")
    second = cli(cluster, "app", "deploy", "--build", str(source), str(spec))
    assert second.returncode == 0, second.stdout + second.stderr
    again = json.loads(cli(cluster, "app", "show", "/built/web", "--json").stdout)
    assert again["container"]["docker"]["image"] != image and again["version"] != shown["version"]


def test_a_job_runs_in_the_image_it_built(cluster: Path, tmp_path: Path) -> None:
    source = context(tmp_path / "job", "a job's file")
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"id": "built-job", "run": {"cmd": "cat /hello.txt", "cpus": 0.1, "mem": 32,
                                                           "disk": 0}}))
    ran = cli(cluster, "job", "run", "--build", str(source), "--wait", str(spec))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "a job's file" in ran.stdout


def test_a_failing_build_deploys_nothing(cluster: Path, tmp_path: Path) -> None:
    source = context(tmp_path / "bad", "never")
    (source / "Dockerfile").write_text("FROM scratch\nCOPY missing.txt /\n")
    spec = tmp_path / "app.json"
    spec.write_text(json.dumps({"id": "/built/never", "cpus": 0.1, "mem": 32, "cmd": "sleep 600"}))
    failed = cli(cluster, "app", "deploy", "--build", str(source), str(spec))
    assert failed.returncode == 1 and "the build of" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert cli(cluster, "app", "show", "/built/never").returncode != 0
