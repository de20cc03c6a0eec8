"""`app deploy --dry-run` (`POST /dockyard/v1/plan`): where an app's instances would go now.

The agents are read from the master's `/state` (what offers would say), as the scheduler
(its principal; TLS verified with its CA); the placement is the pipeline offers go
through (scheduler/placement/), so the preview and a real launch decide alike.
"""
from __future__ import annotations

import logging
import urllib.error
from typing import Any

from scheduler.services.instances import owner_of, task_request
from scheduler.services.specs import AppDefinition

log = logging.getLogger(__name__)


def plan_preview(ctx: Any, app: AppDefinition) -> tuple[int, Any]:
    """(agents considered, the placement `Plan`) for the app's instances now."""
    from scheduler.placement import Placed, place

    core = ctx.core
    requests = [task_request(app) for _ in range(app.instances)]
    agents = agent_views(ctx)
    # The app's own instances are what a rolling update replaces: constraints such as
    # UNIQUE are checked against everything else, not against the old version.
    own = owner_of(app.id)
    placed = [Placed(r.owner, r.agent_id or "", r.hostname or "",
                     (core.agent(r.agent_id) or {}).get("attributes", {}) if r.agent_id else {})
              for r in core.tasks("") if not r.terminal and r.agent_id and r.owner != own]
    return len(agents), place(requests, agents, placed)


def agent_views(ctx: Any) -> list[Any]:
    """Free resources per agent from the master's `/state`; none when it cannot be read."""
    from framework.security.peer import Peer
    from scheduler.mesos_json import agent_views_from_state

    master = str(getattr(ctx.config, "master", "") or "")
    if master.startswith("zk://"):  # the leading master, as the driver found it
        master = str(getattr(getattr(ctx, "driver", None), "master", None) or "")
    if not master:
        return []
    security = getattr(ctx.config, "security", None)
    peer = security.peer if security is not None else Peer()
    try:
        state = peer.get_json(f"{peer.base_url(master)}/state", timeout=5)
    except urllib.error.HTTPError as error:
        log.warning("the master refuses us its state (%s): the preview sees no agent", error)
        return []
    except (OSError, ValueError):
        return []
    return agent_views_from_state(state)
