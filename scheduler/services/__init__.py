"""Marathon-compatible long-running services: apps, instances, health, deployments, backoff.

`ServiceManager(ctx)` is what `scheduler.lifecycle` builds; `specs` validates
AppDefinitions; `reconcile` is the pure decision; `instances` translates to the
core's TaskRequests; `deployments` shapes plans.
"""
from scheduler.services.manager import AppState, ServiceManager

__all__ = ["AppState", "ServiceManager"]
