"""The agent's files API against sandboxes a hostile task has written: symlinks, swaps, FIFOs.

The API runs in-process (a Starlette app over `FilesApi`, as agent_http mounts it);
the sandboxes are plain directories laid out as a Mesos agent lays them out.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from framework.local.agent import beneath
from framework.local.agent.files_api import FilesApi
from scheduler.api.sandbox import task_sandbox

SECRET = "root:$6$not-for-tasks:19000:0:99999:7:::\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path / "work"


@pytest.fixture
def sandbox(work: Path) -> Path:
    run = work / "slaves" / "S1" / "frameworks" / "F1" / "executors" / "E1" / "runs" / "C1"
    run.mkdir(parents=True)
    (run / "stdout").write_text("task output\n")
    os.symlink("C1", run.parent / "latest")
    return run


@pytest.fixture
def host_secret(tmp_path: Path) -> Path:
    """Stands in for the host's /etc/shadow: a file outside every sandbox, readable by root only."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "shadow").write_text(SECRET)
    os.chmod(etc / "shadow", 0o600)
    return etc / "shadow"


@pytest.fixture
def client(work: Path) -> Iterator[TestClient]:
    api = FilesApi(work)
    app = Starlette(routes=[Route("/files/browse", api.browse), Route("/files/read", api.read),
                            Route("/files/download", api.download)])
    with TestClient(app) as test_client:
        yield test_client


def read(client: TestClient, path: Path | str, **params: object):
    return client.get("/files/read", params={"path": str(path), "offset": 0, **params})


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "component-walk"])
def test_a_symlink_out_of_the_sandbox_is_never_followed(client: TestClient, sandbox: Path, host_secret: Path,
                                                        use_openat2: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(beneath, "_openat2_works", None if use_openat2 else False)
    os.symlink("/etc/shadow", sandbox / "leak")
    os.symlink(host_secret, sandbox / "leak2")
    os.symlink(host_secret.parent, sandbox / "etc")
    for path in (sandbox / "leak", sandbox / "leak2", sandbox / "etc" / "shadow"):
        for route in ("/files/read", "/files/download"):
            response = client.get(route, params={"path": str(path), "offset": 0})
            assert response.status_code == 403, (route, path, response.text)
            assert "not-for-tasks" not in response.text and "root:" not in response.text
    # browse lists the links as links and never what they point at
    listing = {Path(e["path"]).name: e for e in client.get("/files/browse", params={"path": str(sandbox)}).json()}
    assert listing["leak"]["mode"].startswith("l") and listing["etc"]["mode"].startswith("l")
    assert listing["leak2"]["size"] == len(str(host_secret))  # the link's own size, not the secret's
    assert client.get("/files/browse", params={"path": str(sandbox / "etc")}).status_code == 403
    assert client.get("/files/browse", params={"path": str(sandbox / "leak")}).status_code == 403
    assert beneath._openat2_works is (True if use_openat2 else False)


def test_the_agents_latest_link_is_followed_and_only_to_a_sibling(client: TestClient, sandbox: Path,
                                                                   host_secret: Path) -> None:
    assert read(client, sandbox.parent / "latest" / "stdout").json() == {"data": "task output\n", "offset": 0}
    os.unlink(sandbox.parent / "latest")
    os.symlink(host_secret.parent, sandbox.parent / "latest")
    assert read(client, sandbox.parent / "latest" / "shadow").status_code == 403


def test_outside_paths_and_dot_dot_are_refused(client: TestClient, sandbox: Path, work: Path) -> None:
    assert read(client, "/etc/passwd").status_code == 403
    assert read(client, f"{sandbox}/../../../../../../../../etc/passwd").status_code == 403
    assert read(client, work / "meta").status_code == 403
    assert read(client, "relative/path").status_code == 403
    assert read(client, sandbox / "missing").status_code == 404
    assert client.get("/files/read", params={"path": str(sandbox / "stdout")}).json() == {"data": "",
                                                                                          "offset": 12}


def test_the_swap_race_never_leaks(client: TestClient, sandbox: Path, host_secret: Path) -> None:
    """A task swapping a directory of its sandbox for a symlink to the host's /etc in a loop, while
    its directory is read, never gets the host's file out (a few hundred tries)."""
    decoy = sandbox / "d"
    decoy.mkdir()
    (decoy / "shadow").write_text("decoy\n")
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            os.rename(decoy, sandbox / "d.old")
            os.symlink(host_secret.parent, decoy)
            time.sleep(0.0005)  # each state lasts long enough for reads to meet both, even under load
            os.unlink(decoy)
            os.rename(sandbox / "d.old", decoy)
            time.sleep(0.0005)
            swaps += 1

    thread = threading.Thread(target=swapper)
    thread.start()
    answers: dict[int, int] = {}
    try:
        for _ in range(400):
            response = read(client, decoy / "shadow")
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
            assert "not-for-tasks" not in response.text
            if response.status_code == 200:
                assert response.json()["data"] == "decoy\n"
            browsed = client.get("/files/browse", params={"path": str(decoy)})
            assert "shadow" not in browsed.text or all(
                e["size"] == len("decoy\n") for e in browsed.json() if e["path"].endswith("/shadow"))
    finally:
        stop.set()
        thread.join()
    assert swaps > 50, "the swapper hardly ran: the race was not tried"
    assert answers.get(200, 0) > 0  # the decoy itself is served when it is in place


def test_a_fifo_or_a_device_answers_at_once_with_an_error(client: TestClient, sandbox: Path) -> None:
    os.mkfifo(sandbox / "fifo")
    os.mknod(sandbox / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a character device
    for path in (sandbox / "fifo", sandbox / "null"):
        for route in ("/files/read", "/files/download"):
            started = time.monotonic()
            response = client.get(route, params={"path": str(path), "offset": 0})
            assert time.monotonic() - started < 2
            assert response.status_code == 400 and "not a regular file" in response.text
    assert client.get("/files/read", params={"path": str(sandbox / "fifo")}).status_code == 400
    names = [Path(e["path"]).name for e in client.get("/files/browse", params={"path": str(sandbox)}).json()]
    assert "fifo" in names and "null" in names  # listed, never opened


def test_download_streams_the_file_it_checked(client: TestClient, sandbox: Path) -> None:
    (sandbox / "big").write_bytes(b"x" * (3 << 20))
    response = client.get("/files/download", params={"path": str(sandbox / "big")})
    assert response.status_code == 200 and len(response.content) == 3 << 20
    assert response.headers["content-disposition"] == 'attachment; filename="big"'
    assert client.get("/files/download", params={"path": str(sandbox)}).status_code == 400


def test_the_schedulers_log_routes_keep_a_task_below_its_executors_directory() -> None:
    """The executor's `dockyard.sandbox` label places a task's files; a label that climbs out or
    names an absolute path is ignored, so no other sandbox (nor the host) is offered to read."""
    directory = "/w/slaves/S/frameworks/F/executors/E/runs/C"
    assert task_sandbox(directory, None) == directory
    assert task_sandbox(directory, ".") == directory
    assert task_sandbox(directory, "tasks/t1") == f"{directory}/tasks/t1"
    for hostile in ("../../../../F2/executors/E/runs/latest", "/etc", "tasks/../../x", "tasks//x", "a/\0b"):
        assert task_sandbox(directory, hostile) is None, hostile
