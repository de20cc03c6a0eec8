"""Agents as placement sees them, read from offers (live) or the master's `/state` (preview).

Both ways read resources and attributes through framework/mesos/resources.py, so an
agent reads the same whichever way it was seen: free resources as `Resources`, and
every attribute (TEXT, SCALAR, RANGES, SET) as the text the master's `/state` shows
(`a`, `3`, `[1-5]`, `{a,b}`), which is what constraints compare against.
"""
from __future__ import annotations

from typing import Any, Mapping

from framework.mesos.resources import UNRESERVED, Resources, attribute_text, attribute_value
from scheduler.placement.views import AgentView


def value_of(obj: Any, default: str | None = None) -> str | None:
    """The `value` of a Mesos id message (`{"value": "..."}`), or `default`."""
    if isinstance(obj, dict):
        return obj.get("value", default)
    return default


def agent_view(offers: list[dict]) -> AgentView:
    """What one agent offers (all its offers summed), in placement's terms."""
    first = offers[0]
    free = Resources([resource for offer in offers for resource in offer.get("resources") or []])
    reserved = sorted(free.roles() - {UNRESERVED})
    return AgentView(
        agent_id=value_of(first.get("agent_id")) or "", hostname=first.get("hostname", ""),
        attributes={a["name"]: attribute_value(a) for a in first.get("attributes") or []},
        cpus=free.scalar("cpus"), mem=free.scalar("mem"), disk=free.scalar("disk"), gpus=free.scalar("gpus"),
        port_ranges=free.ranges("ports"), role=reserved[0] if reserved else UNRESERVED)


def agent_views_from_state(state: Mapping[str, Any]) -> list[AgentView]:
    """Each active agent of a master's `/state`, with what its offers would say is free.

    An inactive agent sends no offers, so live placement never sees it: neither does this.
    """
    views = []
    for agent in state.get("slaves") or []:
        if agent.get("active", True) is False:
            continue
        total = Resources.from_flat(agent.get("resources") or {})
        free = total - Resources.from_flat(agent.get("used_resources") or {})
        views.append(AgentView(
            agent_id=agent.get("id", ""), hostname=agent.get("hostname", ""),
            attributes={name: attribute_text(value) for name, value in (agent.get("attributes") or {}).items()},
            cpus=free.scalar("cpus"), mem=free.scalar("mem"), disk=free.scalar("disk"), gpus=free.scalar("gpus"),
            port_ranges=free.ranges("ports"), total_cpus=total.scalar("cpus"), total_mem=total.scalar("mem"),
            total_disk=total.scalar("disk"), total_gpus=total.scalar("gpus")))
    return views


def agent_url(offer: dict) -> str | None:
    """The agent's HTTP base URL from an offer (for `/files/read` later)."""
    url = offer.get("url") or {}
    address = url.get("address") or {}
    host = address.get("ip") or address.get("hostname") or offer.get("hostname")
    port = address.get("port")
    if not host or not port:
        return None
    return f"{url.get('scheme', 'http')}://{host}:{port}"
