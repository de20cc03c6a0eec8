"""What a router is asked to do (its flags) and what it has done (its counters), shared by the
follower loop (router.py) and the status file it writes (status.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scheduler.router.model import DEFAULT_SLOTS, ModelSettings
from scheduler.router.render import RenderSettings


@dataclass(frozen=True)
class RouterSettings:
    group: str = "external"
    bind_ip: str = "127.0.0.1"
    http_port: int = 80
    stats_ip: str = "127.0.0.1"
    stats_port: int = 0
    stats_users: tuple[tuple[str, str], ...] = ()  # who may read the stats page and /metrics; none: anyone
    server_slots: int = DEFAULT_SLOTS
    resync_interval: float = 30.0
    debounce: float = 0.02  # gather a burst of events into one read of the apps
    hard_stop_after: int = 60

    def model_settings(self) -> ModelSettings:
        reserved = {port: what for port, what in ((self.http_port, "HTTP port"), (self.stats_port, "stats port"))
                    if port}
        return ModelSettings(group=self.group, http_port=self.http_port, reserved_ports=reserved)

    def render_settings(self, admin_socket: Path) -> RenderSettings:
        return RenderSettings(bind_ip=self.bind_ip, http_port=self.http_port, stats_ip=self.stats_ip,
                              stats_port=self.stats_port, stats_users=self.stats_users,
                              admin_socket=str(admin_socket),
                              hard_stop_after=self.hard_stop_after)


@dataclass
class Counters:
    syncs: int = 0
    runtime_updates: int = 0
    reloads: int = 0
    failed_applies: int = 0
    last_change: str = ""
    last_error: str | None = None
    stream: str = "connecting"
    problems: list[str] = field(default_factory=list)
