"""A pytest plugin for test runs in an emulated guest (tests/support/vm.py without KVM), where
everything takes several times longer: every wait of the test support (`procs.wait_for`, and
through it the cluster's; `RawFramework.wait_event`) lasts `$DOCKYARD_TEST_WAIT_SCALE` times
its timeout. Loaded with `-p tests.support.guest_waits`; the tests themselves are unchanged.
"""
from __future__ import annotations

import functools
import os
from typing import Any


def pytest_configure(config: Any) -> None:
    scale = float(os.environ.get("DOCKYARD_TEST_WAIT_SCALE", "1"))
    if scale == 1:
        return
    from tests.support import cluster, framework, procs

    wait_for = procs.wait_for

    @functools.wraps(wait_for)
    def scaled(predicate: Any, timeout: float = 20.0, *args: Any, **kwargs: Any) -> Any:
        return wait_for(predicate, timeout * scale, *args, **kwargs)

    procs.wait_for = scaled
    cluster.wait_for = scaled  # type: ignore[attr-defined]
    wait_event = framework.RawFramework.wait_event

    @functools.wraps(wait_event)
    def scaled_event(self: Any, predicate: Any, timeout: float = 20.0, what: str = "event") -> Any:
        return wait_event(self, predicate, timeout * scale, what)

    framework.RawFramework.wait_event = scaled_event  # type: ignore[method-assign]
