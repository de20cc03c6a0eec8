"""Marathon-compatible long-running services: apps, instances, health, deployments, backoff.

`ServiceManager(ctx)` is what `scheduler.main` builds; `specs` validates
AppDefinitions; `reconcile` is the pure decision; `instances` translates to the
core's TaskRequests; `deployments` shapes plans.
"""
from scheduler.services.manager import AppState, Conflict, NotFound, ServiceManager

__all__ = ["AppState", "Conflict", "NotFound", "ServiceManager"]
