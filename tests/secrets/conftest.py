"""The container tests' registry, busybox image and launchers (tests/containers/conftest.py), for
the tests of secrets inside containers."""
from tests.containers.conftest import busybox, launches, reg, shared_work  # noqa: F401 - fixtures
