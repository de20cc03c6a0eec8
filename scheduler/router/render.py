"""A layout to haproxy.cfg text (Jinja2): pure, and every value checked as it is written.

Values reach the configuration only through `{{ ... }}`, and each one passes
`_token`: a number, or a string of characters that cannot end a token, a line or
start a comment. Names come from `clean_name`, host names and paths from the
checked labels, addresses from `ipaddress`; the check is the last line of defence
should any of those ever let something through (the render then fails, and the
running configuration stays).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jinja2

from framework.errors import DockyardError
from scheduler.router.model import DRAIN, Layout

TOKEN = re.compile(r"^[A-Za-z0-9_.:/%@!$&()*+,;=~\[\]-]{1,1024}$")


class UnsafeValue(DockyardError, ValueError):
    """A value would change the configuration's structure if written."""


@dataclass(frozen=True)
class RenderSettings:
    bind_ip: str = "127.0.0.1"
    http_port: int = 80  # the shared port of vhost and path routes; 0: none
    stats_ip: str = "127.0.0.1"
    stats_port: int = 0  # HAProxy's stats page and Prometheus metrics (/metrics); 0: none
    stats_users: tuple[tuple[str, str], ...] = ()  # (user, password) the stats page asks for; none: open
    admin_socket: str = "haproxy.sock"  # the runtime API (level admin; hands listeners over on reload)
    hard_stop_after: int = 60  # seconds an old worker may keep serving in-flight connections after a reload
    maxconn: int = 4096
    connect_timeout: int = 5
    client_timeout: int = 60
    server_timeout: int = 60


TEMPLATE = """\
# Written by dockyard router: edits are replaced at the next change.
global
  stats socket {{ s.admin_socket }} mode 600 level admin expose-fd listeners
  stats timeout 30s
  hard-stop-after {{ s.hard_stop_after }}s
  maxconn {{ s.maxconn }}

defaults
  mode tcp
  maxconn {{ s.maxconn }}
  retries 3
  option redispatch 1
  timeout connect {{ s.connect_timeout }}s
  timeout client {{ s.client_timeout }}s
  timeout server {{ s.server_timeout }}s
  timeout http-request 10s
  timeout http-keep-alive 10s
  timeout queue 10s
  timeout tunnel 1h
{% if s.stats_port and s.stats_users %}

userlist dockyard_stats_users
{% for name, password in s.stats_users %}
  user {{ name }} insecure-password {{ password }}
{% endfor %}
{% endif %}
{% if s.stats_port %}

frontend dockyard_stats
  bind {{ s.stats_ip }}:{{ s.stats_port }}
  mode http
{% if s.stats_users %}
  http-request auth realm dockyard-router unless { http_auth(dockyard_stats_users) }
{% endif %}
  http-request use-service prometheus-exporter if { path /metrics }
  stats enable
  stats uri /
  stats refresh 5s
{% endif %}
{% if s.http_port %}

frontend dockyard_http
  bind {{ s.bind_ip }}:{{ s.http_port }}
  mode http
{% for route in routes %}
{% if route.vhosts %}
  acl host_{{ route.backend }} req.hdr(host),field(1,:) -i{% for host in route.vhosts %} {{ host }}{% endfor %}

{% endif %}
{% if route.paths %}
  acl path_{{ route.backend }} path_beg{% for path in route.paths %} {{ path }}{% endfor %}

{% endif %}
  use_backend {{ route.backend }} if{% if route.vhosts %} host_{{ route.backend }}{% endif %}{% if route.paths %} path_{{ route.backend }}{% endif %}

{% endfor %}
  default_backend dockyard_no_route

backend dockyard_no_route
  mode http
  http-request return status 404 content-type text/plain string "no service for this host and path"
{% endif %}
{% for f in frontends %}

frontend {{ f.name }}
  bind {{ s.bind_ip }}:{{ f.port }}
  mode {{ f.mode }}
  default_backend {{ f.backend }}
{% endfor %}
{% for b in backends %}

backend {{ b.name }}
  mode {{ b.mode }}
  balance roundrobin
{% if b.mode == "http" %}
  option forwardfor
  http-request set-header X-Forwarded-Port %[dst_port]
  retry-on conn-failure empty-response
{% endif %}
{% for slot in slots[b.name] %}
{% if slot.server %}
  server {{ slot.name }} {{ slot.server.address }}:{{ slot.server.port }}{% if slot.server.state == drain %} disabled{% endif %}

{% else %}
  server {{ slot.name }} 127.0.0.1:1 disabled
{% endif %}
{% endfor %}
{% endfor %}
"""


def _token(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UnsafeValue(f"not a number or a name: {value!r}")
    if isinstance(value, str) and not TOKEN.match(value):
        raise UnsafeValue(f"would change the configuration's structure: {value[:80]!r}")
    return value


_ENVIRONMENT = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_token,
                                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_TEMPLATE = _ENVIRONMENT.from_string(TEMPLATE)


def render(layout: Layout, settings: RenderSettings = RenderSettings()) -> str:
    """haproxy.cfg for `layout`. A draining server is written disabled: a reload leaves
    in-flight requests to the old worker, so the new one sends it nothing."""
    model = layout.model
    return _TEMPLATE.render(s=settings, routes=model.routes, frontends=model.frontends, backends=model.backends,
                            slots=layout.slots, drain=DRAIN)
