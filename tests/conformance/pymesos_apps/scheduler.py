"""A pymesos 0.3.15 scheduler: launches one task on a pymesos executor, then stops.

usage: scheduler.py MASTER EXECUTOR_COMMAND [PRINCIPAL SECRET_FILE]
Prints one JSON object per line for each callback, so the test can follow it.
With PRINCIPAL and SECRET_FILE it authenticates to the master (HTTP Basic, pymesos's
`principal`/`secret`), as a secured cluster asks every framework to.
Runs under Python 3.10 with pymesos installed; it does not import dockyard.
"""
import getpass
import json
import socket
import sys
import threading
import uuid

from pymesos import MesosSchedulerDriver, Scheduler, decode_data, encode_data


def say(**fields):
    print(json.dumps(fields), flush=True)


class OneTask(Scheduler):
    def __init__(self, executor_command):
        self.executor_command = executor_command
        self.launched = False
        self.lock = threading.Lock()
        self.task_id = "pymesos-" + uuid.uuid4().hex[:8]
        # Messages and status updates travel separately (no ordering between them):
        # stop once both the terminal update and the executor's message are in.
        self.finished = False
        self.got_message = False

    def maybe_stop(self, driver):
        with self.lock:
            done = self.finished and self.got_message
        if done:
            driver.stop()

    def registered(self, driver, frameworkId, masterInfo):
        say(event="registered", framework_id=frameworkId.value, master=masterInfo.hostname,
            port=masterInfo.port)

    def resourceOffers(self, driver, offers):
        say(event="offers", count=len(offers))
        for offer in offers:
            with self.lock:
                launch, self.launched = not self.launched, True
            if not launch:
                driver.declineOffer(offer.id, {"refuse_seconds": 60})
                continue
            executor = {
                "executor_id": {"value": "pymesos-executor"},
                "name": "pymesos executor",
                "command": {"value": self.executor_command},
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}},
                ],
            }
            task = {
                "task_id": {"value": self.task_id},
                "agent_id": {"value": offer.agent_id.value},
                "name": "pymesos task",
                "executor": executor,
                "data": encode_data(b"hello executor"),
                "resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
                ],
            }
            driver.launchTasks(offer.id, [task])
            say(event="launched", task_id=self.task_id, agent_id=offer.agent_id.value)

    def statusUpdate(self, driver, status):
        say(event="update", task_id=status.task_id.value, state=status.state,
            source=status.get("source"), has_uuid=bool(status.get("uuid")),
            message=status.get("message"), data=decode_data(status.data).decode() if status.data else None)
        if status.state == "TASK_FINISHED":
            with self.lock:
                self.finished = True
            self.maybe_stop(driver)
        elif status.state in ("TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_KILLED", "TASK_DROPPED"):
            driver.stop()

    def frameworkMessage(self, driver, executorId, slaveId, message):
        say(event="message", executor_id=executorId.value, data=decode_data(message).decode())
        with self.lock:
            self.got_message = True
        self.maybe_stop(driver)

    def error(self, driver, message):
        say(event="error", message=message)


def main():
    master, executor_command = sys.argv[1], sys.argv[2]
    principal, secret = None, None
    if len(sys.argv) > 4:
        principal = sys.argv[3]
        with open(sys.argv[4]) as handle:
            secret = handle.read().strip()
    framework = {"user": getpass.getuser(), "name": "pymesos-conformance",
                 "hostname": socket.gethostname()}
    if principal:
        framework["principal"] = principal
    driver = MesosSchedulerDriver(OneTask(executor_command), framework, master, use_addict=True,
                                  principal=principal, secret=secret)
    driver.run()
    say(event="stopped")


if __name__ == "__main__":
    main()
