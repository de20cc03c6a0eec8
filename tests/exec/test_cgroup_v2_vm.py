"""`task exec` on a host with cgroup v2 alone, run for real in a guest.

This host is hybrid (cgroup v1 controllers, an empty v2 hierarchy beside them), so the v2 path of
framework/local/agent/nested_entry.py never runs here: a nested container's own cgroup below its task's
in the unified hierarchy, counting against the task's limits (no controllers of its own: what it
uses is its task's), emptied at once through `cgroup.kill` and removed when the session ends. The
guest (tests/support/vm.py: a stock Debian kernel booted with `cgroup_no_v1=all`, this host's root
read-only) runs the tests of tests/exec/test_exec.py about cgroups, from this very checkout, which
check each of those from the outside; crun, which refuses hybrid hosts, runs there too. Without KVM
(nested virtualisation) the guest is emulated, about five minutes, its waits made longer
(tests/support/guest_waits.py).
"""
from __future__ import annotations

import pytest

from tests.support import vm
from tests.support.procs import REPO

# The tests about cgroups: the container's and the host task's, a memory hog, the session's end,
# the runtime that does not stay, crun.
GUEST_TESTS = ["tests/exec/test_exec.py", "-k", "'image_and_the_container or relay or another_runtime or host_task "
                                                "or hog or leaving'"]
GUEST_TIMEOUT = 1800  # about five minutes in an emulated guest, under one with KVM
TCG_WAIT_SCALE = 8  # the emulated guest is that much slower than the tests' waits expect

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(GUEST_TIMEOUT + 600)]


@pytest.fixture(scope="module")
def guest_run() -> vm.GuestResult:
    try:
        vm.check_host()
        vm.kernel()
        accel = vm.accelerator()
    except vm.Unavailable as error:
        pytest.skip(f"no cgroup v2 guest here: {error}")
    command = (".venv/bin/python -c 'from framework import cgroups; print(cgroups.detect().describe())' "
               "> $VM_OUT/layout 2>&1; "
               ".venv/bin/python -m pytest -p no:cacheprovider -p tests.support.guest_waits -q --timeout 900 "
               f"--junitxml=$VM_OUT/junit.xml {' '.join(GUEST_TESTS)}")
    scale = TCG_WAIT_SCALE if accel == "tcg" else 1
    return vm.run(command, cwd=str(REPO), timeout=GUEST_TIMEOUT, accel=accel,
                  env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "DOCKYARD_TEST_WAIT_SCALE": str(scale)})


def test_exec_tests_pass_on_cgroup_v2(guest_run: vm.GuestResult) -> None:
    assert guest_run.files.get("layout", "").strip() == "cgroup v2 at /sys/fs/cgroup", guest_run.summary()
    report = vm.TestReport.of(guest_run)
    assert report, "the guest wrote no test report:\n" + guest_run.summary()
    counts = report.counts
    print(f"guest ({guest_run.accel}, boot {guest_run.boot_seconds}s, wall {guest_run.wall_seconds:.0f}s): "
          f"{counts}, skipped {report.skipped}")
    assert counts["failures"] == 0 and counts["errors"] == 0, "\n".join(report.failed) + "\n" + guest_run.summary()
    assert not [name for name in report.skipped if "runtime" in name], "crun must run on a v2 host"
    assert counts["tests"] - counts["skipped"] >= 6, counts
