"""Bridge, veth and network-namespace plumbing through iproute2's `ip`.

Why `ip` and not netlink from Python: it is what an operator types to inspect
or repair a lab by hand, so every step here can be replayed from a shell. Every
failure becomes a `NetworkError` naming the command and what `ip` said.
Removal is idempotent: deleting what is already gone is not an error, because
`lab down` must work on a half-built lab.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import NetworkError

IFNAMSIZ = 15  # longest Linux interface name
NETNS_DIR = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")
_GONE = ("Cannot find device", "No such file or directory", "does not exist",
         "Cannot open network namespace")


def ip(*args: str, netns: str | None = None, ok_if_gone: bool = False,
       timeout: float = 20.0) -> str:
    """Run `ip ARGS` (inside `netns` when given) and return its stdout."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as error:
        raise NetworkError("iproute2 is not installed (`ip` not found)") from error
    except subprocess.TimeoutExpired as error:
        raise NetworkError(f"`{' '.join(argv)}` timed out after {timeout}s") from error
    if done.returncode != 0:
        message = done.stderr.strip() or done.stdout.strip()
        if ok_if_gone and any(text in message for text in _GONE):
            return ""
        if "Operation not permitted" in message:
            message += " (network namespaces need root)"
        raise NetworkError(f"`{' '.join(argv)}` failed: {message}")
    return done.stdout


def check_name(name: str) -> str:
    """Refuse interface names the kernel would reject, before half a lab exists."""
    if not name or len(name) > IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise NetworkError(f"bad interface name {name!r} (1..{IFNAMSIZ} characters, "
                           "no '/' or spaces)")
    return name


# -- inspection ------------------------------------------------------------

def netns_list() -> list[str]:
    """Names of the network namespaces `ip netns` knows."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(entry.name for entry in NETNS_DIR.iterdir())


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def links(netns: str | None = None) -> list[dict]:
    """`ip -j link` as a list of dicts (ifname, operstate, flags, master...)."""
    return json.loads(ip("-j", "link", "show", netns=netns) or "[]")


def link_names(netns: str | None = None) -> list[str]:
    return [entry["ifname"] for entry in links(netns)]


def link_exists(name: str, netns: str | None = None) -> bool:
    return name in link_names(netns)


def link_is_up(name: str, netns: str | None = None) -> bool:
    """True when the link is administratively up (the flag partition clears)."""
    for entry in links(netns):
        if entry["ifname"] == name:
            return "UP" in entry.get("flags", [])
    return False


def netns_pids(name: str) -> list[int]:
    """Every process whose network namespace is `name` (tasks and executors too)."""
    if not netns_exists(name):
        return []
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                         timeout=20)
    return sorted(int(word) for word in out.stdout.split() if word.isdigit())


# -- building --------------------------------------------------------------

def add_bridge(name: str, address: str) -> None:
    """A bridge with `address` (CIDR) on the host, so the host can reach every node."""
    check_name(name)
    ip("link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
    ip("addr", "add", address, "dev", name)
    ip("link", "set", name, "up")


def add_netns(name: str) -> None:
    ip("netns", "add", name)
    # Loopback up so processes inside can talk to themselves on 127.0.0.1.
    ip("link", "set", "lo", "up", netns=name)


@dataclass(frozen=True)
class NodeLink:
    """How one node hangs off the bridge: host end, address inside the namespace."""

    netns: str
    host_if: str
    address: str          # CIDR, e.g. 10.213.0.11/24
    inner_if: str = "eth0"


def plug(link: NodeLink, bridge: str) -> None:
    """Create a veth pair, move one end into the namespace as eth0, attach the other.

    No default route is added inside: nodes reach only the lab subnet, and the
    host does not forward their traffic anywhere else.
    """
    check_name(link.host_if)
    temp = check_name(f"{link.host_if}p")[:IFNAMSIZ]
    ip("link", "add", link.host_if, "type", "veth", "peer", "name", temp)
    ip("link", "set", temp, "netns", link.netns)
    ip("link", "set", temp, "name", link.inner_if, netns=link.netns)
    ip("addr", "add", link.address, "dev", link.inner_if, netns=link.netns)
    ip("link", "set", link.inner_if, "up", netns=link.netns)
    ip("link", "set", link.host_if, "master", bridge)
    ip("link", "set", link.host_if, "up")


def set_link(name: str, up: bool, netns: str | None = None) -> None:
    ip("link", "set", name, "up" if up else "down", netns=netns)


# -- removal (idempotent) --------------------------------------------------

def delete_link(name: str, netns: str | None = None) -> None:
    if netns and not netns_exists(netns):
        return
    ip("link", "del", name, netns=netns, ok_if_gone=True)


def delete_netns(name: str) -> None:
    """Remove the namespace (its veth end goes with it) and its /etc/netns folder."""
    if netns_exists(name):
        ip("netns", "del", name, ok_if_gone=True)
    folder = NETNS_ETC / name
    if folder.is_dir():
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()
    try:
        NETNS_ETC.rmdir()      # only when empty: other namespaces' files stay
    except OSError:
        pass


# -- addresses -------------------------------------------------------------

def host_address(subnet: str, index: int) -> str:
    """The `index`-th address of `subnet` as CIDR text, checked to lie inside it."""
    try:
        network = ipaddress.ip_network(subnet)
    except ValueError as error:
        raise NetworkError(f"bad lab subnet {subnet!r}: {error}") from error
    if network.version != 4 or not network.is_private:
        raise NetworkError(f"lab subnet {subnet} is not a private IPv4 range")
    if not 0 < index < network.num_addresses - 1:
        raise NetworkError(f"address #{index} does not fit in {subnet}")
    return f"{network.network_address + index}/{network.prefixlen}"


def bare(address: str) -> str:
    """10.213.0.11/24 -> 10.213.0.11"""
    return address.split("/", 1)[0]
