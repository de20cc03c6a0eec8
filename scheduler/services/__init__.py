"""Marathon-compatible long-running services: apps, instances, health, deployments, backoff.

`ServiceManager(ctx)` is what `scheduler.lifecycle` builds; `specs` validates
AppDefinitions; `admission` assigns service ports (`ports`) and checks router labels
before an app is stored; `reconcile` is the pure decision; `drain` holds a planned kill
until the routers took the instance out; `instances` translates to the core's
TaskRequests; `deployments` shapes plans; `instance_events` says what instances did.
"""
from scheduler.services.manager import AppState, ServiceManager

__all__ = ["AppState", "ServiceManager"]
