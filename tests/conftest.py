"""Shared fixtures: real services on loopback, started and stopped by the tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import leaks, zookeeper


@pytest.fixture(scope="session")
def zk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zookeeper.ZooKeeper]:
    """One real ZooKeeper for the session; tests use their own znode paths."""
    if not zookeeper.available():
        pytest.fail("ZooKeeper is not installed: run the tests through `make test`")
    server = zookeeper.ZooKeeper(Path(tmp_path_factory.mktemp("zookeeper"))).start()
    yield server
    server.stop()


@pytest.fixture
def task_dir() -> Iterator[Path]:
    """A directory every task user may read and write, for files a test shares with its tasks:
    tasks run as nobody unless their spec names a user, and tmp_path's parents are root's alone."""
    path = Path(tempfile.mkdtemp(prefix="dockyard-task-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def task_python() -> str:
    """A Python every task user may run: the tests' own may live under root's private home."""
    if os.geteuid() != 0:
        return sys.executable
    for candidate in (sys.executable, shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")):
        try:
            if candidate and subprocess.run([candidate, "-c", ""], user="nobody", capture_output=True).returncode == 0:
                return candidate
        except OSError:  # not executable for nobody
            continue
    pytest.fail("no Python that user nobody may run (tasks run as nobody by default)")


_unattributed: list[str] = []

# Under `pytest -n` (make test), each test file runs in one worker, so a module's cluster starts
# once; files that build network namespaces on the lab's subnet share one worker, one after
# another, so two labs never share the subnet; so do the router's, whose HAProxys bind the
# scheduler's default service ports (10000 and up) on the host. (xdist's own `xdist_group`
# marks do not work with pytest 9: xdist writes the group into a node id pytest no longer reads.)
_ONE_WORKER = {"tests/lab/": "lab-network", "tests/faults/": "lab-network", "tests/router/": "router-ports"}


def work_unit(nodeid: str) -> str:
    """The tests that run in one worker, one after another: a file, or a folder of `_ONE_WORKER`."""
    path = nodeid.split("::")[0]
    return next((name for prefix, name in _ONE_WORKER.items() if path.startswith(prefix)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


@pytest.fixture(autouse=True)
def no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test whose clusters or tmp_path leave task cgroups, overlay mounts or runtime
    containers behind. Autouse, so it is torn down after the test's own fixtures."""
    _unattributed.extend(leaks.take())  # left by a module-scoped cluster: reported at the end
    yield
    found = leaks.take()
    tmp_path = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp_path is not None:
        dirs = leaks.work_dirs_under(tmp_path)
        own = leaks.leftovers(dirs)
        if own:
            found += [f"{tmp_path}: {item}" for item in own]
            leaks.clean(dirs)
    if found:
        pytest.fail("left behind (no orphaned containers, mounts or cgroups may survive a test):\n  "
                    + "\n  ".join(found), pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Whatever is still left under this session's temp dirs (module-scoped clusters, work dirs
    shared by several tests) fails the run."""
    found = _unattributed + leaks.take()
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        try:
            base = factory.getbasetemp()
        except (OSError, ValueError):
            base = None
        if base is not None:
            dirs = leaks.work_dirs_under(base, max_depth=8)
            found += leaks.leftovers(dirs)
            if found:
                try:
                    leaks.clean(dirs)
                except Exception as error:  # report it with the rest, never as a crash of pytest
                    found.append(f"clean-up failed: {error!r}")
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "left behind by this session:\n  " + "\n  ".join(found)
        if reporter is not None:
            reporter.write_line(text, red=True)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
