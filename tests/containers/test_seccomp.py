"""The seccomp profiles: dockyard's default allow-list, how rules' conditions are settled per
container, and an agent's own profile file under real runc."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from executor.containers import bundle
from framework import seccomp
from framework.errors import ContainerError
from tests.containers.conftest import Launches, stdout_of

NEVER = {"add_key", "keyctl", "request_key", "kexec_load", "kexec_file_load", "userfaultfd", "io_uring_setup",
         "io_uring_enter", "io_uring_register", "uselib", "create_module", "_sysctl", "nfsservctl", "vm86"}


def allowed(profile: dict) -> set[str]:
    """Names some rule lets through unconditionally (no argument filter)."""
    return {name for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
            for name in rule["names"]}


def test_the_default_is_an_allow_list_in_dockers_shape() -> None:
    profile = seccomp.for_container("default", bundle.DEFAULT_CAPS)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    names = allowed(profile)
    assert {"read", "write", "openat", "execve", "futex", "epoll_wait", "chroot"} <= names
    assert not NEVER & names
    assert not {"mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "ptrace", "process_vm_readv",
                "init_module", "finit_module", "open_by_handle_at", "pivot_root", "reboot", "swapon"} & names
    clone = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in profile["syscalls"]
    socket = [r for r in profile["syscalls"] if r["names"] == ["socket"]]
    assert socket[0]["args"] == [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]  # no AF_VSOCK


def test_capabilities_open_their_own_calls_and_nothing_else() -> None:
    ptrace = allowed(seccomp.for_container("default", [*bundle.DEFAULT_CAPS, "CAP_SYS_PTRACE"]))
    assert {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"} <= ptrace
    assert not {"mount", "unshare"} & ptrace
    admin = seccomp.for_container("default", [*bundle.DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    assert {"mount", "unshare", "setns", "clone", "clone3"} <= allowed(admin)
    assert not [r for r in admin["syscalls"] if r["names"] == ["clone3"] and r["action"] != "SCMP_ACT_ALLOW"]
    assert not NEVER & allowed(admin)
    assert "chroot" not in allowed(seccomp.for_container("default", ["CAP_CHOWN"]))


def test_conditions_follow_dockers_reading() -> None:
    profile = {"defaultAction": "SCMP_ACT_ERRNO", "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
        "syscalls": [
            {"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_X", "CAP_Y"]}},
            {"names": ["b"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
            {"names": ["c"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "6.1"}},
            {"names": ["d"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_X"]}},
            {"names": ["e"], "action": "SCMP_ACT_ALLOW", "comment": "kept, without the comment"}]}

    def names(caps: list[str], machine: str = "x86_64", kernel: str = "6.6.0") -> list[str]:
        return [r["names"][0] for r in seccomp.render(profile, caps, machine, kernel)["syscalls"]]

    assert names(["CAP_X"]) == ["c", "e"]  # includes.caps needs every one named
    assert names(["CAP_X", "CAP_Y"]) == ["a", "c", "e"]
    assert names([], "aarch64", "5.10.0-amd64") == ["b", "d", "e"]
    assert seccomp.render(profile, [], "aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "comment" not in seccomp.render(profile, [])["syscalls"][-1]


def test_a_profile_file_is_checked_when_the_agent_starts(tmp_path: Path) -> None:
    assert seccomp.check_choice("default") == "default" and seccomp.check_choice("unconfined") == "unconfined"
    for text, words in (("{not json", "is not JSON"), ('{"syscalls": []}', "has no defaultAction"),
                        ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}',
                         "needs names and an action")):
        path = tmp_path / f"bad-{len(text)}.json"
        path.write_text(text)
        with pytest.raises(ValueError, match=words):
            seccomp.check_choice(str(path))
    with pytest.raises(ValueError, match="No such file"):
        seccomp.check_choice(str(tmp_path / "missing.json"))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}))
    assert seccomp.check_choice(str(good)) == str(good.resolve())
    with pytest.raises(ContainerError):
        seccomp.for_container(str(tmp_path / "gone.json"), [])


@pytest.mark.root
def test_an_agents_own_profile_and_unconfined_reach_the_container(launches: Launches, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """--seccomp-profile PATH (in the OCI shape here): the container runs under exactly that."""
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                                                 "errnoRet": 13}]}))
    monkeypatch.setenv("DOCKYARD_SECCOMP_PROFILE", str(profile))
    custom = launches.launch("mkdir /tmp/x && echo made; grep Seccomp: /proc/self/status")
    assert custom.wait(30) is not None
    out = stdout_of(custom)
    assert "made" not in out and "Seccomp:\t2" in out
    monkeypatch.setenv("DOCKYARD_SECCOMP_PROFILE", "unconfined")
    loose = launches.launch("mkdir /tmp/x && echo made; grep Seccomp: /proc/self/status")
    assert loose.wait(30) is not None
    assert "made" in stdout_of(loose) and "Seccomp:\t0" in stdout_of(loose)
