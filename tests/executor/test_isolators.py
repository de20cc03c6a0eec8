"""The agent's --isolation, in Mesos's isolator names, as the executor reads it."""
from __future__ import annotations

import pytest

from framework.isolation import Isolators


def test_the_default_is_cgroups_and_a_pid_namespace() -> None:
    """Host tasks of one user must not read each other's /proc/<pid>/environ (their secrets)."""
    assert Isolators.parse(Isolators.DEFAULT) == Isolators(cgroups=True, pid_namespace=True) == Isolators()


@pytest.mark.parametrize("text, expected", [
    ("cgroups/cpu,cgroups/mem,namespaces/pid", Isolators(True, True)),
    ("cgroups/all", Isolators(True, False)),
    (" cgroups/mem , namespaces/pid ,", Isolators(True, True)),
    ("posix/cpu,posix/mem", Isolators(False, False)),
    ("filesystem/linux,docker/runtime,disk/du,cgroups/cpu", Isolators(True, False)),
    ("", Isolators(False, False)),
])
def test_mesos_isolator_names(text: str, expected: Isolators) -> None:
    assert Isolators.parse(text) == expected


def test_unknown_names_and_a_pid_namespace_without_cgroups_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown isolator 'gpu/nvidia'.*namespaces/pid"):
        Isolators.parse("cgroups/cpu,gpu/nvidia")
    with pytest.raises(ValueError, match="namespaces/pid needs a cgroups/ isolator"):
        Isolators.parse("posix/cpu,namespaces/pid")


def test_executors_read_it_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKYARD_ISOLATION", raising=False)
    assert Isolators.from_env() == Isolators(True, True)
    monkeypatch.setenv("DOCKYARD_ISOLATION", "cgroups/cpu,namespaces/pid")
    assert Isolators.from_env() == Isolators(True, True)
    monkeypatch.setenv("DOCKYARD_ISOLATION", "posix/cpu")
    assert Isolators.from_env() == Isolators(False, False)
