"""The scheduler core: the launch queue, offers, kills, reconciliation, owners' statuses.

`Core` (coordinator.py) is what workloads and the Mesos edge talk to; each of its
jobs lives in a module of its own beside it.
"""
from scheduler.core.config import CoreConfig, default_executor_command
from scheduler.core.coordinator import Core
from scheduler.core.records import OwnerCallback

__all__ = ["Core", "CoreConfig", "OwnerCallback", "default_executor_command"]
