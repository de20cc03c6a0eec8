"""`dockyard router`: a real HAProxy kept in step with the scheduler, marathon-lb style.

    labels.py   the HAPROXY_* labels, read and checked (`validate_router_labels`, pure)
    model.py    apps -> frontends, backends, routes, servers; slots and runtime commands (pure)
    render.py   a layout -> haproxy.cfg (Jinja2, every value checked; pure)
    runtime.py  HAProxy's runtime API and master CLI over their UNIX sockets
    haproxy.py  the HAProxy process: start, check, seamless reload, stop
    client.py   the scheduler's apps and event stream, as any client, and the router's reports
    report.py   what the router reports: the instances it still serves (drain before kill; pure)
    router.py   the follower loop that ties them together
    status.py   status.json, and `router_status` for `dockyard router status`
    cli.py      the commands

docs/router.md is the user's view.
"""
from scheduler.router.labels import router_ports, validate_router_labels
from scheduler.router.status import router_status

__all__ = ["router_ports", "router_status", "validate_router_labels"]
