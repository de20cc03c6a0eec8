"""No component serves a network address open by accident.

A master, agent or scheduler bound to an address other than loopback refuses
to start while authentication or TLS is off, and names the flags that would
turn them on; `--insecure` is the explicit way to do it anyway.
"""
from __future__ import annotations

import ipaddress
import logging

from framework.errors import SecurityError

log = logging.getLogger(__name__)


def is_loopback(address: str) -> bool:
    if address in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_binding(component: str, address: str, missing: list[str], insecure: bool) -> None:
    """Refuse (SecurityError) when `component` would serve `address` with `missing` protections.

    `missing` lists what is off, each naming the flag that turns it on, e.g.
    "authentication (--credentials with --authenticate-http-readwrite)".
    """
    if not missing:
        return
    if insecure:
        log.warning("%s serves %s with %s off (--insecure)", component, address, " and ".join(missing))
        return
    if is_loopback(address):
        return
    raise SecurityError(
        f"{component} refuses to serve {address} open: {'; '.join(missing)}. "
        f"Give those flags, or --insecure to serve it open anyway")
