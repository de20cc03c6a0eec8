"""A raw v1 scheduler API client for tests: httpx + RecordIO, no driver in between.

It subscribes on a background thread, records every event, and offers small
helpers (launch, kill, acknowledge, wait for an update). Tests see exactly what
the master sends: uuids, sources, reasons. It is given the master as an
`Endpoint` (tests/support/security.py), so it authenticates and verifies TLS as
that endpoint does:

    framework = RawFramework(cluster.master_api(), name="test").start()
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Callable

import httpx

from framework.mesos import recordio

from .security import Endpoint


class RawFramework:
    def __init__(self, master: Endpoint, *, name: str = "test", capabilities: list[str] = (),  # type: ignore[assignment]
                 checkpoint: bool = False, auto_ack: bool = True) -> None:
        self.master = master
        self.info: dict[str, Any] = {"user": "root", "name": name, "checkpoint": checkpoint,
                                     "capabilities": [{"type": c} for c in capabilities]}
        if master.identity is not None:  # as a secured framework: the principal it authenticates with
            self.info["principal"] = master.identity.principal
        self.auto_ack = auto_ack
        self.framework_id: str | None = None
        self.stream_id: str | None = None
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.client = master.client()
        self._stop = False
        self.suppressed = False  # after decline_all(), until offer() revives
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- lifecycle ----------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> "RawFramework":
        self._thread.start()
        self.wait_event(lambda e: e["type"] == "SUBSCRIBED", timeout, "SUBSCRIBED")
        return self

    def stop(self, teardown: bool = True) -> None:
        self._stop = True
        if self.framework_id and teardown:
            try:
                self.call({"type": "TEARDOWN"})
            except (httpx.HTTPError, AssertionError):
                pass
        self.client.close()

    def _run(self) -> None:
        try:
            self._stream()
        except Exception as error:  # visible in the test's output; the stream is gone
            if not self._stop:
                import traceback
                traceback.print_exc()
                with self.cond:
                    self.events.append({"type": "_STREAM_ERROR", "error": repr(error)})
                    self.cond.notify_all()

    def _stream(self) -> None:
        body = {"type": "SUBSCRIBE", "subscribe": {"framework_info": self.info}}
        with self.master.client(timeout=httpx.Timeout(10.0, read=None)) as client:
            with client.stream("POST", f"{self.master.url}/api/v1/scheduler", content=json.dumps(body),
                               headers={"Content-Type": "application/json", "Accept": "application/json"}) as resp:
                self.stream_id = resp.headers.get("mesos-stream-id")
                decoder = recordio.Decoder()
                for chunk in resp.iter_raw():
                    if self._stop:
                        return
                    for record in decoder.feed(chunk):
                        self._on_event(json.loads(record))

    def _on_event(self, event: dict) -> None:
        if event["type"] == "SUBSCRIBED":
            self.framework_id = event["subscribed"]["framework_id"]["value"]
            self.info["id"] = {"value": self.framework_id}
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()
        if event["type"] == "UPDATE" and self.auto_ack:
            status = event["update"]["status"]
            if "uuid" in status:
                threading.Thread(target=self.acknowledge, args=(status,), daemon=True).start()

    # -- calls ----------------------------------------------------------------------
    def call(self, body: dict) -> httpx.Response:
        body = {**body, "framework_id": {"value": self.framework_id}}
        response = self.client.post(f"{self.master.url}/api/v1/scheduler", content=json.dumps(body),
                                    headers={"Content-Type": "application/json",
                                             "Mesos-Stream-Id": self.stream_id or ""})
        assert response.status_code == 202, (body["type"], response.status_code, response.text)
        return response

    def acknowledge(self, status: dict) -> None:
        try:
            self.call({"type": "ACKNOWLEDGE", "acknowledge": {
                "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}})
        except (httpx.HTTPError, AssertionError, RuntimeError):
            pass  # the master went away or the test closed this client: nothing left to acknowledge

    def offer(self, agent_hostname: str | None = None, timeout: float = 20.0) -> dict:
        """An offer not yet used (from the named agent, if given)."""
        if self.suppressed:
            self.suppressed = False
            self.call({"type": "REVIVE"})
        used = {o for e in self.events if e["type"] == "_USED" for o in e["ids"]}

        def usable(event: dict) -> bool:
            return event["type"] == "OFFERS" and any(
                o["id"]["value"] not in used and (agent_hostname is None or o["hostname"] == agent_hostname)
                for o in event["offers"]["offers"])

        event = self.wait_event(usable, timeout, "an offer")
        for offer in event["offers"]["offers"]:
            if offer["id"]["value"] not in used and (agent_hostname is None or offer["hostname"] == agent_hostname):
                with self.cond:
                    self.events.append({"type": "_USED", "ids": [offer["id"]["value"]]})
                return offer
        raise AssertionError("unreachable")

    def decline_all(self, refuse_seconds: float = 60.0) -> None:
        """Give back every offer held and not used, and take no more until `offer()`, so that another
        framework of the same cluster gets them (this client never declines by itself)."""
        used = {o for e in self.events if e["type"] == "_USED" for o in e["ids"]}
        held = [o["id"] for e in self.events if e["type"] == "OFFERS" for o in e["offers"]["offers"]
                if o["id"]["value"] not in used]
        self.call({"type": "SUPPRESS"})  # and no new offers until `offer()` asks again
        self.suppressed = True
        if held:
            with self.cond:
                self.events.append({"type": "_USED", "ids": [o["value"] for o in held]})
            self.call({"type": "DECLINE", "decline": {"offer_ids": held,
                                                      "filters": {"refuse_seconds": refuse_seconds}}})

    def launch(self, offer: dict, tasks: list[dict]) -> None:
        for task in tasks:
            task.setdefault("agent_id", offer["agent_id"])
        self.call({"type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
            "filters": {"refuse_seconds": 0.0}}})

    def launch_group(self, offer: dict, executor: dict, tasks: list[dict]) -> None:
        for task in tasks:
            task.setdefault("agent_id", offer["agent_id"])
        executor.setdefault("framework_id", {"value": self.framework_id})
        self.call({"type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH_GROUP", "launch_group": {
                "executor": executor, "task_group": {"tasks": tasks}}}],
            "filters": {"refuse_seconds": 0.0}}})

    def kill(self, task_id: str, agent_id: dict | None = None, grace: float | None = None) -> None:
        body: dict[str, Any] = {"task_id": {"value": task_id}}
        if agent_id:
            body["agent_id"] = agent_id
        if grace is not None:
            body["kill_policy"] = {"grace_period": {"nanoseconds": int(grace * 1e9)}}
        self.call({"type": "KILL", "kill": body})

    # -- waiting ----------------------------------------------------------------------
    def wait_event(self, predicate: Callable[[dict], bool], timeout: float = 20.0, what: str = "event") -> dict:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    kinds = [e["type"] for e in self.events][-20:]
                    raise TimeoutError(f"timed out waiting for {what}; last events: {kinds}")
                self.cond.wait(left)

    def updates(self, task_id: str) -> list[dict]:
        with self.cond:
            return [e["update"]["status"] for e in self.events
                    if e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"] == task_id]

    def wait_state(self, task_id: str, state: str, timeout: float = 20.0) -> dict:
        event = self.wait_event(lambda e: e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"]
                                == task_id and e["update"]["status"]["state"] == state, timeout,
                                f"{task_id} {state}")
        return event["update"]["status"]

    def wait_terminal(self, task_id: str, timeout: float = 20.0) -> dict:
        terminal = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED",
                    "TASK_GONE"}
        event = self.wait_event(lambda e: e["type"] == "UPDATE" and e["update"]["status"]["task_id"]["value"]
                                == task_id and e["update"]["status"]["state"] in terminal, timeout,
                                f"{task_id} terminal")
        return event["update"]["status"]


def command_task(command: str, *, task_id: str | None = None, cpus: float = 0.1, mem: float = 32.0,
                 **extra: Any) -> dict:
    """A TaskInfo for a command task (the agent synthesises its executor)."""
    task_id = task_id or f"task-{uuid.uuid4().hex[:8]}"
    return {"name": task_id, "task_id": {"value": task_id}, "command": {"value": command},
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
                          {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}}], **extra}
