"""A secured embedded cluster (2 agents), a scheduler process serving the UI, and browsers.

The scheduler is the real `dockyard scheduler` process, started by the tests' usual
support (tests/support/scheduler.py) as the UI tests' runner (`tests/ui/ui_scheduler.py`),
which adds the UI's routes to the scheduler's app when it does not mount them itself.

Every browser a test opens is checked when the test ends: a screenshot is saved when the
test failed (under `$DOCKYARD_UI_ARTIFACTS`, else `dockyard-ui-screenshots/` in the system's
temporary directory: pytest's own rotates away), and any error in its JavaScript console fails
the test.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import pytest

from framework.security.bundle import Identity
from tests.support import scheduler as scheduler_support
from tests.support.cluster import Cluster
from tests.support.procs import wait_for
from tests.support.scheduler import SchedulerProcess
from tests.ui.browser import Browser, available


def ui_scheduler_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.ui.ui_scheduler", *args]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"ui_report_{report.when}", report)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("ui-cluster"), agents=2,
                 resources="cpus:4;mem:4096;disk:10000").start() as started:
        yield started


@pytest.fixture(scope="package")
def scheduler(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    with mock.patch.object(scheduler_support, "dockyard", ui_scheduler_argv):
        started = SchedulerProcess.start(cluster, tmp_path_factory.mktemp("ui-scheduler"))
    with started:
        yield started


@pytest.fixture(scope="package")
def artifacts() -> Path:
    configured = os.environ.get("DOCKYARD_UI_ARTIFACTS")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "dockyard-ui-screenshots"


@pytest.fixture
def open_browser(request: pytest.FixtureRequest, scheduler: SchedulerProcess,
                 artifacts: Path) -> Iterator[Callable[..., Browser]]:
    """`open_browser(identity, url=None)`: a new headless Chromium logged in as `identity` to the
    scheduler at `url` (default: the package's scheduler)."""
    why = available()
    if why is not None:
        pytest.fail(why)
    opened: list[Browser] = []

    def open_one(identity: Identity | None, url: str | None = None) -> Browser:
        browser = Browser.start(url or scheduler.url, artifacts)
        opened.append(browser)
        browser.login(identity)
        return browser

    yield open_one
    failed = getattr(request.node, "ui_report_call", None)
    errors: list[str] = []
    for index, browser in enumerate(opened):
        try:
            if failed is not None and failed.failed:
                path = browser.save_screenshot(f"{request.node.nodeid}-{index}")
                request.node.add_report_section("teardown", "screenshot", str(path))
                print(f"screenshot of the failed test: {path}")
            browser.console_errors()
            errors += [f"{entry.get('message')}" for entry in browser.errors]
        finally:
            browser.quit()
    if errors and not (failed is not None and failed.failed):
        pytest.fail("JavaScript console errors:\n  " + "\n  ".join(errors), pytrace=False)


@pytest.fixture
def admin(open_browser: Callable[..., Browser], cluster: Cluster) -> Browser:
    return open_browser(cluster.operator)


@pytest.fixture
def viewer(open_browser: Callable[..., Browser], cluster: Cluster) -> Browser:
    assert cluster.bundle is not None
    return open_browser(cluster.bundle.viewer)


@pytest.fixture(autouse=True)
def _nothing_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the scheduler, delete the apps and jobs it left and wait until
    their tasks are gone (they would hold ports, and outlive the cluster)."""
    yield
    if "scheduler" not in request.fixturenames:
        return
    scheduler: SchedulerProcess = request.getfixturevalue("scheduler")
    for app in scheduler.call("GET", "/v2/apps")["apps"]:
        scheduler.status("DELETE", f"/v2/apps/{app['id'].strip('/')}?force=true")
    for job in scheduler.call("GET", "/v1/jobs"):
        scheduler.status("DELETE", f"/v1/jobs/{job['id']}?stopCurrentJobRuns=true")
    wait_for(lambda: not scheduler.call("GET", "/v2/tasks")["tasks"], timeout=60, what="every app's tasks ended")
