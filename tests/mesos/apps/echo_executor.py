"""A custom executor built on dockyard's MesosExecutorDriver, for the driver tests.

It tells the scheduler what it sees through framework messages (JSON, base64):
`{"event": "registered", ...}` with its pid and MESOS_* view, and it answers
`ping` with `pong`, `unacked` with the number of unacknowledged updates.
A task's `data` (base64 JSON) picks its behaviour: `{"finish": true}` ends at
once; `{"finish_on_disconnect": true}` sends TASK_FINISHED while the agent is
away, to check the update travels in the next SUBSCRIBE.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import sys
import threading

from framework.mesos.executor import MesosExecutorDriver
from framework.mesos.interface import Executor


def encode(obj: object) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


class EchoExecutor(Executor):
    def __init__(self) -> None:
        self.running: dict[str, dict] = {}
        self.lock = threading.Lock()

    def tell(self, driver: MesosExecutorDriver, **fields: object) -> None:
        driver.sendFrameworkMessage(encode(fields))

    def update(self, driver: MesosExecutorDriver, task_id: dict, state: str, message: str = "") -> None:
        driver.sendStatusUpdate({"task_id": task_id, "state": state, "message": message})

    def registered(self, driver, executorInfo, frameworkInfo, slaveInfo) -> None:  # noqa: ANN001
        env = {k: v for k, v in os.environ.items() if k.startswith("MESOS_")}
        self.tell(driver, event="registered", pid=os.getpid(),
                  executor_id=executorInfo.executor_id.value, framework_id=frameworkInfo.id.value,
                  agent_hostname=slaveInfo.hostname, checkpoint=driver.checkpoint, env=env)

    def reregistered(self, driver, slaveInfo) -> None:  # noqa: ANN001
        self.tell(driver, event="reregistered", pid=os.getpid(), agent_hostname=slaveInfo.hostname)

    def disconnected(self, driver) -> None:  # noqa: ANN001
        with self.lock:
            tasks = [t for t in self.running.values() if t.get("finish_on_disconnect")]
        for task in tasks:
            self.update(driver, task["task_id"], "TASK_FINISHED", "finished while the agent was away")

    def launchTask(self, driver, task) -> None:  # noqa: ANN001
        mode = json.loads(base64.b64decode(task.data)) if task.data else {}
        self.update(driver, task.task_id.to_dict(), "TASK_RUNNING")
        if mode.get("finish"):
            self.update(driver, task.task_id.to_dict(), "TASK_FINISHED")
            return
        with self.lock:
            self.running[task.task_id.value] = dict(mode, task_id=task.task_id.to_dict())

    def launchTaskGroup(self, driver, task_infos) -> None:  # noqa: ANN001
        for task in task_infos:
            self.launchTask(driver, task)

    def killTask(self, driver, taskId) -> None:  # noqa: ANN001
        with self.lock:
            self.running.pop(taskId.value, None)
        policy = driver.kill_policies.get(taskId.value)
        grace = policy.grace_period.nanoseconds if policy else None
        self.update(driver, taskId.to_dict(), "TASK_KILLED", f"killed (grace ns: {grace})")

    def frameworkMessage(self, driver, message) -> None:  # noqa: ANN001
        text = base64.b64decode(message).decode()
        if text == "ping":
            self.tell(driver, event="pong")
        elif text == "unacked":
            self.tell(driver, event="unacked", count=len(driver.unacknowledged_updates()))

    def shutdown(self, driver) -> None:  # noqa: ANN001
        with self.lock:
            tasks, self.running = list(self.running.values()), {}
        for task in tasks:
            try:
                self.update(driver, task["task_id"], "TASK_KILLED", "executor shut down")
            except Exception:  # the agent may be gone: nothing else to do
                logging.exception("final update failed")


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    driver = MesosExecutorDriver(EchoExecutor(), use_addict=True)
    status = driver.run()
    logging.info("driver finished: %s", status)
    return 0 if status == "DRIVER_STOPPED" else 1


if __name__ == "__main__":
    sys.exit(main())
