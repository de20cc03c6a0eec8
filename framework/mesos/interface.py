"""Callback interfaces for Mesos schedulers and executors, shaped like pymesos 0.3.15.

Method names and positional parameters are pymesos's (which kept the old
libmesos names, hence `slaveId`/`slaveInfo`), so code written for pymesos ports
to dockyard by changing an import. Every callback is a no-op here; subclasses
override what they need. Callbacks run on the driver's event thread: they
should return quickly and hand long work to another thread.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Scheduler", "Executor"]


class Scheduler:
    """What a framework scheduler hears from the master, through its driver."""

    def registered(self, driver: Any, frameworkId: Any, masterInfo: Any) -> None:
        """First subscription succeeded; `frameworkId` is `{"value": ...}`."""

    def reregistered(self, driver: Any, masterInfo: Any) -> None:
        """Subscribed again with the framework id we already had (failover or reconnect)."""

    def disconnected(self, driver: Any) -> None:
        """The event stream was lost; the driver is reconnecting."""

    def processHeartBeat(self, driver: Any) -> None:
        """The master sent a HEARTBEAT: the stream is alive."""

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        """New offers; accept or decline each, or it stays held by this framework."""

    def inverseOffers(self, driver: Any, offers: list[Any]) -> None:
        """Maintenance inverse offers (rarely used)."""

    def offerRescinded(self, driver: Any, offerId: Any) -> None:
        """An offer is no longer valid; launching on it will fail."""

    def inverseOfferRescinded(self, driver: Any, offerId: Any) -> None:
        """An inverse offer is no longer valid."""

    def statusUpdate(self, driver: Any, status: Any) -> None:
        """A task changed state. With implicit ACKs the driver acknowledges after return."""

    def operationStatusUpdate(self, driver: Any, status: Any) -> None:
        """An offer operation changed state (reservation/volume operations)."""

    def frameworkMessage(self, driver: Any, executorId: Any, slaveId: Any, message: Any) -> None:
        """An executor sent a message; `message` is base64 text."""

    def slaveLost(self, driver: Any, slaveId: Any) -> None:
        """An agent was removed from the cluster."""

    def executorLost(self, driver: Any, executorId: Any, slaveId: Any, status: Any) -> None:
        """A custom executor exited; `status` is the raw wait status."""

    def error(self, driver: Any, message: str) -> None:
        """An unrecoverable error; the driver aborts after this returns."""


class Executor:
    """What an executor hears from its agent, through its driver."""

    def registered(self, driver: Any, executorInfo: Any, frameworkInfo: Any, slaveInfo: Any) -> None:
        """First subscription with the agent succeeded."""

    def reregistered(self, driver: Any, slaveInfo: Any) -> None:
        """Subscribed again after a disconnection (agent restart with checkpointing)."""

    def disconnected(self, driver: Any) -> None:
        """The connection to the agent was lost."""

    def launchTask(self, driver: Any, task: Any) -> None:
        """Start a task; report progress with `driver.sendStatusUpdate`."""

    def launchTaskGroup(self, driver: Any, task_infos: list[Any]) -> None:
        """Start a group of tasks that live and die together."""

    def killTask(self, driver: Any, taskId: Any) -> None:
        """Kill a task and send its terminal update (normally TASK_KILLED)."""

    def frameworkMessage(self, driver: Any, message: Any) -> None:
        """The scheduler sent a message; `message` is base64 text."""

    def shutdown(self, driver: Any) -> None:
        """Kill every task and exit; the agent destroys the container after a grace period."""

    def error(self, driver: Any, message: str) -> None:
        """The agent reported an error."""
