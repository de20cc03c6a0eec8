"""Fixtures for lab tests: a unique lab name and subnet, and a check that nothing is left."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from framework.local.lab import lab as labs
from tests.support.procs import REPO
from tests.support.security import Endpoint

STANDIN = f"{sys.executable} {REPO / 'tests' / 'lab' / 'standin_role.py'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Root-marked lab tests cannot run as another user: skip them with the reason."""
    if os.geteuid() == 0:
        return
    for item in items:
        if "root" in item.keywords and "tests/lab" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason="needs root: network namespaces"))


def unused_subnet() -> str:
    """A random 10.213.X.0/24 (100-199) that no interface of the host has an address in now."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        third = 100 + secrets.randbelow(100)
        if f" 10.213.{third}." not in taken:
            return f"10.213.{third}.0/24"
    raise RuntimeError("every 10.213.100-199.0/24 subnet is in use on this host")


class Lab:
    """A lab under test, driven through the real `dockyard lab` command line."""

    def __init__(self, root: Path) -> None:
        self.name = "t" + secrets.token_hex(3)
        self.root = root
        self.subnet = unused_subnet()

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(REPO / "dockyard.py"), "lab", "--name", self.name,
                "--root", str(self.root), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {done.returncode}\n"
                                 f"stdout: {done.stdout}\nstderr: {done.stderr}")
        return done

    def up(self, *args: str, **kwargs: object) -> subprocess.CompletedProcess:
        return self.run("up", "--subnet", self.subnet, *args, **kwargs)  # type: ignore[arg-type]

    def status(self) -> dict:
        return json.loads(self.run("status", "--json").stdout)

    def node(self, name: str) -> dict:
        return next(node for node in self.status()["nodes"] if node["name"] == name)

    @property
    def dir(self) -> Path:
        return self.root / self.name

    def scheduler_api(self) -> Endpoint:
        """The lab's scheduler as the host's CLI reaches it: the lab's client.json (its operator,
        its CA; the lab serves TLS on every role)."""
        return Endpoint.from_client_file(self.dir / "client.json", "url")

    def master_api(self) -> Endpoint:
        return Endpoint.from_client_file(self.dir / "client.json", "master")


def serves(ip: str, port: int) -> bool:
    """Whether an HTTP server answers at ip:port from the host. Any answer counts: `python -m
    http.server` run as nobody may answer 404 for a sandbox whose parents nobody may list."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (our labs' paths are unique)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def assert_clean(lab: Lab) -> None:
    """Nothing of the lab remains: namespaces, links, /etc/netns files, processes, files."""
    assert labs.leftovers(lab.name) == {"netns": [], "links": [], "etc": []}
    assert processes_mentioning(str(lab.dir)) == []
    assert not (lab.dir / "state.json").exists()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A lab name that is torn down (and checked clean) whatever the test did.

    Its root is short, as the default /var/lib/dockyard-lab is: HAProxy's sockets then stay in the
    router's work dir, which `lab down` removes (a path too long for a socket address puts them in
    a directory of the host's temp dir, scheduler/router/haproxy.py)."""
    root = Path(tempfile.mkdtemp(prefix="dyl-"))
    under_test = Lab(root)
    try:
        yield under_test
        under_test.run("down", timeout=120, check=False)
        assert_clean(under_test)
    finally:
        shutil.rmtree(root, ignore_errors=True)
