"""The Mesos edge: driver callbacks become domain events for the core.

Each callback hands what it needs to the core thread, as the plain dicts the driver
parsed (it is made with use_addict=False and keeps no reference to them); nothing here
decides anything, and nothing blocks the driver's stream.
"""
from __future__ import annotations

import logging
from typing import Any

from framework.mesos.interface import Scheduler
from scheduler.core import Core

log = logging.getLogger(__name__)


class DockyardScheduler(Scheduler):
    def __init__(self, core: Core) -> None:
        self.core = core

    def registered(self, driver: Any, frameworkId: Any, masterInfo: Any) -> None:
        log.info("registered as framework %s", frameworkId.get("value"))
        self.core.post("subscribed", {"framework_id": frameworkId.get("value"), "master": masterInfo})

    def reregistered(self, driver: Any, masterInfo: Any) -> None:
        log.info("re-registered with the master")
        self.core.post("subscribed", {"framework_id": None, "master": masterInfo})

    def disconnected(self, driver: Any) -> None:
        self.core.post("disconnected", None)

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        self.core.post("offers", list(offers))

    def offerRescinded(self, driver: Any, offerId: Any) -> None:
        self.core.post("rescinded", offerId)

    def statusUpdate(self, driver: Any, status: Any) -> None:
        self.core.post("status", status)

    def slaveLost(self, driver: Any, slaveId: Any) -> None:
        self.core.post("agent_lost", slaveId.get("value"))

    def executorLost(self, driver: Any, executorId: Any, slaveId: Any, status: Any) -> None:
        self.core.post("executor_lost", {"executor_id": executorId.get("value"),
                                         "agent_id": slaveId.get("value"), "status": status})

    def error(self, driver: Any, message: str) -> None:
        self.core.post("error", message)  # the core says it, once, with what to do
