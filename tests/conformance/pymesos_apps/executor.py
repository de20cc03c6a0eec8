"""A pymesos 0.3.15 executor: runs each task by reporting RUNNING then FINISHED.

Runs under Python 3.10 with pymesos installed; it does not import dockyard.
"""
import sys
import time

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


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
    MesosExecutorDriver(QuickExecutor(), use_addict=True).run()
