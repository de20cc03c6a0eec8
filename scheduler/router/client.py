"""The router's view of the scheduler: the apps with their tasks, the event stream, and the
reports a router sends back (the instances it still serves, for drain before kill).

It connects as every dockyard client does (framework/security/client.py): the URL,
credentials and CA of `--config FILE`, `$DOCKYARD_CONFIG` or `./.dockyard/client.json`,
`--url` over them. Reading is all it needs, so the `viewer` principal will do: a report
only ends early the drain of an instance whose kill the scheduler decided already.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import httpx

from framework.errors import Forbidden
from framework.security.client import ClientConfig

# The events after which what the router serves may have changed; the others (jobs,
# subscriptions, framework messages) never change an app's instances.
EVENT_TYPES = (
    "event_stream_attached", "api_post_event", "status_update_event", "instance_changed_event",
    "health_status_changed_event", "instance_health_changed_event", "failed_health_check_event",
    "unhealthy_instance_kill_event", "app_terminated_event", "deployment_info", "deployment_success",
    "deployment_failed", "deployment_step_success", "deployment_step_failure", "group_change_success",
)
STREAM_READ_TIMEOUT = 35.0  # the scheduler writes a keep-alive every 10 s


class Refused(Forbidden):
    """The scheduler answered 401 or 403: who we were and where that came from, in one line."""


class SchedulerClient:
    def __init__(self, settings: ClientConfig, timeout: float = 10.0) -> None:
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.timeout = timeout
        self.http = httpx.Client(timeout=timeout, **settings.httpx_options())

    def _check(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise Refused(self.settings.refusal(response.status_code, f"the scheduler at {self.url}", response.text))
        response.raise_for_status()

    def apps(self) -> list[dict[str, Any]]:
        """Every app with its tasks and readiness results (Marathon's embed names), and which
        tasks drain (dockyard's `apps.draining`: `"draining": true` on those tasks)."""
        response = self.http.get(f"{self.url}/v2/apps", params=[("embed", "apps.tasks"),
                                                                 ("embed", "apps.readiness"),
                                                                 ("embed", "apps.draining")])
        self._check(response)
        return list(response.json().get("apps") or [])

    def report(self, router_id: str, group: str, serving: Iterable[str], every: float) -> list[str]:
        """Tell the scheduler which instances this router still serves; answers those it drains.
        `every`: the next report comes within so many seconds (0: this router leaves)."""
        response = self.http.post(f"{self.url}/dockyard/v1/routers",
                                  json={"id": router_id, "group": group, "serving": sorted(serving),
                                        "nextReportWithin": every})
        self._check(response)
        return [str(task) for task in response.json().get("draining") or []]

    def events(self) -> Iterator[str]:
        """The type of each event as it arrives, `event_stream_attached` first; returns when
        the stream ends and raises when it cannot be opened or breaks."""
        timeout = httpx.Timeout(self.timeout, read=STREAM_READ_TIMEOUT)
        with httpx.Client(timeout=timeout, **self.settings.httpx_options()) as stream_client:
            with stream_client.stream("GET", f"{self.url}/v2/events", params={"event_type": ",".join(EVENT_TYPES)},
                                      headers={"Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    response.read()
                    self._check(response)
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        yield line[len("event:"):].strip()

    def close(self) -> None:
        self.http.close()
