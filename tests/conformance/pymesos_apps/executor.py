"""A pymesos 0.3.15 executor: runs each task by reporting RUNNING then FINISHED.

Runs under Python 3.10 with pymesos installed; it does not import dockyard.

pymesos knows nothing of executor authentication: on an agent with
`--authenticate-http-executors` (dockyard's or Mesos's `--authenticate_http_executors`)
its calls are refused with 401. `AuthenticatingDriver` is what a pymesos user on
such a cluster must add: read the agent's token from
`MESOS_EXECUTOR_AUTHENTICATION_TOKEN`, take it out of the environment (as Mesos's
own executor library does, so the tasks do not inherit it), and send it as
`Authorization: Bearer <token>` on SUBSCRIBE and on every call.
"""
import os
import sys
import time

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data

TOKEN_ENV = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"


class AuthenticatingDriver(MesosExecutorDriver):
    """pymesos's executor driver plus the agent's executor token on every request."""

    def __init__(self, *args, **kwargs):
        token = os.environ.pop(TOKEN_ENV, None)
        super().__init__(*args, **kwargs)
        self._authorization = "Bearer " + token if token else None

    def gen_request(self):
        """The SUBSCRIBE request pymesos writes by hand, with an Authorization header."""
        request = super().gen_request()
        if not self._authorization:
            return request
        head, blank, body = request.partition(b"\r\n\r\n")
        return head + b"\r\nAuthorization: " + self._authorization.encode() + blank + body

    def _send(self, body, path="/api/v1/executor", method="POST", headers=None):
        """UPDATE and MESSAGE (pymesos's default `headers` is a shared dict: never touch it)."""
        headers = dict(headers or {})
        if self._authorization:
            headers["Authorization"] = self._authorization
        return super()._send(body, path=path, method=method, headers=headers)


class QuickExecutor(Executor):
    def registered(self, driver, executorInfo, frameworkInfo, agentInfo):
        print("registered", executorInfo.executor_id.value, frameworkInfo.id.value,
              agentInfo.hostname, flush=True, file=sys.stderr)

    def launchTask(self, driver, task):
        greeting = decode_data(task.data).decode() if task.data else ""
        update = {"task_id": task.task_id, "state": "TASK_RUNNING",
                  "timestamp": time.time(), "data": encode_data(b"running")}
        driver.sendStatusUpdate(update)
        driver.sendFrameworkMessage(encode_data(("got: " + greeting).encode()))
        driver.sendStatusUpdate({"task_id": task.task_id, "state": "TASK_FINISHED",
                                 "message": "done by pymesos"})

    def shutdown(self, driver):
        print("shutdown", flush=True, file=sys.stderr)


if __name__ == "__main__":
    AuthenticatingDriver(QuickExecutor(), use_addict=True).run()
