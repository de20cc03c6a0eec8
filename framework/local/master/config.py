"""The embedded master's flags, and how it names its own address."""
from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class MasterConfig:
    ip: str = "127.0.0.1"
    port: int = 5050
    work_dir: str = "."
    hostname: str | None = None
    zk: str | None = None
    zk_session_timeout: float = 10.0  # Mesos --zk_session_timeout
    allocation_interval: float = 1.0
    heartbeat_interval: float = 15.0
    status_update_retry: float = 10.0
    agent_ping_interval: float = 5.0
    agent_ping_timeout: float = 75.0
    # How long a new leader waits for agents of its registry to re-register.
    agent_reregister_timeout: float = 120.0
    # Delay that batches prompt allocations (freed resources, subscribe, revive).
    allocation_batch: float = 0.002
    # Mesos --offer_timeout: rescind offers outstanding longer than this (None: never).
    offer_timeout: float | None = None
    # --max-request-bytes: the largest request body read, in bytes (larger: 413, before reading it).
    # An agent re-registering with thousands of tasks, or an ACCEPT launching them, is several MB.
    max_request_bytes: int = 64 << 20
    # Security (docs/security.md), Mesos's flags; all off by default, as in Mesos.
    credentials: str | None = None              # --credentials: Mesos's JSON file
    authenticate_http_frameworks: bool = False  # realm mesos-master-scheduler
    http_framework_authenticators: str = "basic"
    authenticate_http_readonly: bool = False    # realm mesos-master-readonly
    authenticate_http_readwrite: bool = False   # realm mesos-master-readwrite
    authenticate_agents: bool = False           # realm dockyard-master-agents
    acls: str | None = None                     # --acls: the local authorizer's JSON
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_require_client_cert: bool = False
    insecure: bool = False                      # serve a network address open, knowingly


def ip_as_int(ip: str) -> int:
    """MasterInfo.ip: the IPv4 address in network order, read as a host-order uint32."""
    try:
        return int.from_bytes(socket.inet_aton(ip), "little")
    except OSError:
        return 0


def advertised_ip(ip: str) -> str:
    """The address others should use: a wildcard bind advertises this host's address."""
    if ip not in ("0.0.0.0", ""):
        return ip
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
