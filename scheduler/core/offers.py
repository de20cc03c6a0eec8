"""The offer book: offers held for work that comes next, and what offers told of each agent.

Held offers (Aurora's offer manager): new work is placed on them at once, with no
REVIVE round trip, and the framework is not suppressed while it holds any; each is
kept `offer_hold_seconds`, then declined. Offers belong to one subscription: a new
one, an error or a disconnection voids them.

Offers carry free resources only; the most an agent ever offered stands in for its
capacity, which lets placement tell "full now" from "never big enough".

Not locked itself: the core's lock guards it.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from scheduler.core.config import CoreConfig
from scheduler.core.metrics import OFFERS
from scheduler.mesos_json import agent_url, agent_view, value_of
from scheduler.placement.views import AgentView


def by_agent(offers: list[dict]) -> dict[str, list[dict]]:
    """Offers grouped by agent id, in arrival order."""
    grouped: dict[str, list[dict]] = {}
    for offer in offers:
        grouped.setdefault(value_of(offer.get("agent_id")) or "", []).append(offer)
    return grouped


class OfferBook:
    """Held offers with their expiry, each agent's address and attributes, and its capacity."""

    def __init__(self, config: CoreConfig, post: Callable[[str, Any], None]) -> None:
        self._config = config
        self._post = post  # asks the core thread to `release_held` when a hold expires
        self._held: dict[str, tuple[dict, float]] = {}  # offer id -> (offer, monotonic expiry)
        self._timer: threading.Timer | None = None
        self._agents: dict[str, dict] = {}  # agent id -> {"hostname", "url", "attributes"}
        self._capacity: dict[str, list[float]] = {}  # agent id -> most ever offered

    # -- held offers ---------------------------------------------------------------

    def __bool__(self) -> bool:
        return bool(self._held)

    def take(self) -> list[dict]:
        """Every held offer, no longer held (a round is about to use them)."""
        held = [offer for offer, _ in self._held.values()]
        self._held.clear()
        return held

    def hold(self, offers: list[dict]) -> None:
        expires = time.monotonic() + self._config.offer_hold_seconds
        for offer in offers:
            self._held[value_of(offer.get("id")) or ""] = (offer, expires)
        OFFERS.labels("held").inc(len(offers))
        if offers and self._timer is None:
            self._start_timer(self._config.offer_hold_seconds)

    def expired(self) -> list[dict]:
        """The ids of offers held past their time, no longer held; look again later for the
        others (the core declines these)."""
        now = time.monotonic()
        self._timer = None
        expired = [offer_id for offer_id, (_, expires) in self._held.items() if expires <= now]
        ids = [self._held.pop(offer_id)[0]["id"] for offer_id in expired]
        remaining = min((expires for _, expires in self._held.values()), default=None)
        if remaining is not None:
            self._start_timer(max(0.05, remaining - now))
        return ids

    def rescinded(self, offer_id: Any) -> None:
        self._held.pop(value_of(offer_id) or "", None)

    def clear(self) -> None:
        """The subscription they belong to ended: every held offer is void."""
        self._held.clear()

    def stop(self) -> None:
        if self._timer:
            self._timer.cancel()

    def _start_timer(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._post, args=("release_held", None))
        self._timer.daemon = True
        self._timer.start()

    # -- agents --------------------------------------------------------------------

    def seen(self, offers_by_agent: dict[str, list[dict]]) -> list[AgentView]:
        """Note each offering agent's address and attributes; what it offers, as placement sees it."""
        views = []
        for agent_id, offers in offers_by_agent.items():
            view = agent_view(offers)
            views.append(view)
            self._agents[agent_id] = {"hostname": offers[0].get("hostname"), "url": agent_url(offers[0]),
                                      "attributes": view.attributes}
        return views

    def agent(self, agent_id: str) -> dict | None:
        """How to reach an agent that offered once (`hostname`, `url`) and its `attributes`."""
        return self._agents.get(agent_id)

    def attributes(self, agent_id: str) -> dict[str, str]:
        return (self._agents.get(agent_id) or {}).get("attributes", {})

    def lost(self, agent_id: str) -> None:
        """An agent is gone: forget how to reach it, and its held offers."""
        self._agents.pop(agent_id, None)
        for offer_id in [i for i, (o, _) in self._held.items() if value_of(o.get("agent_id")) == agent_id]:
            del self._held[offer_id]

    def with_capacity(self, view: AgentView) -> AgentView:
        """The view with the most its agent ever offered (in rounds with work) as its capacity."""
        seen = self._capacity.setdefault(view.agent_id, [0.0, 0.0, 0.0, 0.0])
        seen[:] = [max(seen[0], view.cpus), max(seen[1], view.mem), max(seen[2], view.disk),
                   max(seen[3], view.gpus)]
        view.total_cpus, view.total_mem, view.total_disk, view.total_gpus = seen
        return view
