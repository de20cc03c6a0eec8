"""The cgroup v2 code path, run for real in a guest that has cgroup v2 alone.

This host is cgroup v1 with an empty v2 hierarchy beside it, so `Layout(version=2)` never
runs here. The test boots a small guest (tests/support/vm.py: a stock Debian kernel with
`cgroup_no_v1=all`, this host's root read-only over 9p) and runs the cgroup-relevant tests
of this very checkout inside it: limits, OOM, pids, CPU quota, stats, kill and clean-up of
containers under runc, host-isolated command tasks, and the embedded cluster's agents
and executors reporting OOM kills to a framework.
"""
from __future__ import annotations

import pytest

from tests.support import vm
from tests.support.procs import REPO

# What runs in the guest. The repository is read-only there (tmp_path, work dirs, the
# registry and the image store live on tmpfs), which these tests do not mind.
GUEST_TESTS = ["tests/containers/test_host_isolation.py", "tests/containers/test_limits.py",
               "tests/containers/test_containers.py",
               "tests/containers/test_e2e_cluster.py"]
GUEST_TIMEOUT = 2400  # emulated (TCG) guests are slow; with KVM the run takes a few minutes

pytestmark = [pytest.mark.slow, pytest.mark.root, pytest.mark.timeout(GUEST_TIMEOUT + 600)]


def _guest_command(selection: list[str]) -> str:
    # pytest runs as `dockyard up` from a login shell would on a systemd host: in a
    # non-root cgroup (`session.scope`) that other processes share (a shell, a `sleep`),
    # so the executor's move into `dockyard-leaf` before delegating is exercised too.
    return ("grep cgroup /proc/self/mountinfo > $VM_OUT/mountinfo; "
            "cat /sys/fs/cgroup/cgroup.controllers > $VM_OUT/controllers; "
            ".venv/bin/python -c 'from framework import cgroups; print(cgroups.detect().describe())' "
            "> $VM_OUT/layout 2>&1; "
            "mkdir /sys/fs/cgroup/session.scope && echo 0 > /sys/fs/cgroup/session.scope/cgroup.procs; "
            "sleep 100000 & "
            ".venv/bin/python -m pytest -p no:cacheprovider -q --timeout 600 "
            f"--junitxml=$VM_OUT/junit.xml {' '.join(selection)}; status=$?; "
            "cat /sys/fs/cgroup/session.scope/cgroup.procs > $VM_OUT/session; exit $status")


@pytest.fixture(scope="module")
def guest_run() -> vm.GuestResult:
    try:
        vm.check_host()
        vm.kernel()
    except vm.Unavailable as error:
        pytest.skip(f"no cgroup v2 guest here: {error}")
    return vm.run(_guest_command(GUEST_TESTS), cwd=str(REPO), timeout=GUEST_TIMEOUT,
                  env={"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"})


def test_the_guest_is_cgroup_v2_only(guest_run: vm.GuestResult) -> None:
    assert guest_run.boot_seconds is not None, "the guest never reached its command:\n" + guest_run.summary()
    mounts = guest_run.files.get("mountinfo", "")
    assert " - cgroup2 " in mounts and " - cgroup " not in mounts, mounts
    assert guest_run.files.get("layout", "").strip() == "cgroup v2 at /sys/fs/cgroup", guest_run.files
    for controller in ("cpu", "memory", "pids"):
        assert controller in guest_run.files.get("controllers", "").split()
    # the shell, the sleep and pytest moved from session.scope into its dockyard-leaf
    assert guest_run.files.get("session", "").strip() == "", guest_run.files.get("session")


def test_container_and_host_isolation_tests_pass_on_cgroup_v2(guest_run: vm.GuestResult) -> None:
    report = vm.TestReport.of(guest_run)
    assert report, "the guest wrote no test report:\n" + guest_run.summary()
    counts = report.counts
    print(f"guest ({guest_run.accel}, boot {guest_run.boot_seconds}s, wall {guest_run.wall_seconds:.0f}s): {counts}")
    assert counts["failures"] == 0 and counts["errors"] == 0, "\n".join(report.failed) + "\n" + guest_run.summary()
    assert counts["tests"] - counts["skipped"] >= 10, counts
    assert guest_run.exit_code == 0, guest_run.summary()
