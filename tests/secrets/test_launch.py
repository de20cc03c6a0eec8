"""Secrets from spec to launch: the core resolves them into the ACCEPT and nowhere else.

The core and the jobs manager are real, over the embedded store; the driver is a
recorder (tests/scheduler/test_core_jobs.py); the agent's side is the executor's own
`command_env` and the master's and agent's views of the TaskInfo that was sent.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from executor.launcher import command_env
from framework.errors import SpecError
from framework.local.master.model import Task
from framework.local.master.operator_api import legacy_task, task_json
from framework.mesos.resources import Resources
from framework.mesos.secrets import MARKER, SecretFormatError, checkpointed, redacted, value_secret
from framework.store import open_store
from scheduler.core import Core, CoreConfig
from scheduler.jobs.manager import JobManager
from scheduler.jobs.specs import parse_job
from scheduler.secrets.crypto import generate_key, write_key_file
from scheduler.secrets.refs import acting_as
from scheduler.secrets.store import Forbidden, SecretsOff, open_secrets
from scheduler.services.instances import task_request
from scheduler.services.specs import parse_app
from tests.scheduler.test_core_jobs import Clock, RecordingDriver, launched, offer

VALUE = "pa55-" + base64.b16encode(b"\x01\x02\x03").decode()


def world(tmp_path: Path, executor_command: str | None = None):  # noqa: ANN201
    store = open_store(tmp_path / "data")
    write_key_file(tmp_path / "key", [generate_key()])
    secrets = open_secrets(store, str(tmp_path / "key"))
    clock = Clock()
    core = Core(store, CoreConfig(executor_command=executor_command), clock=clock)
    core.secrets = secrets
    driver = RecordingDriver(core)
    core.attach(driver)
    core.handle_subscribed({"framework_id": "F1"})
    jobs = JobManager(store, core, clock=clock)
    jobs.secrets = secrets
    return store, secrets, core, driver, jobs


JOB = {"id": "backup", "run": {"cmd": "true", "cpus": 0.1, "mem": 32,
                               "env": {"PLAIN": "x", "DB_PW": {"secret": "pw"}},
                               "secrets": {"pw": {"source": "/db/password"}}}}


def test_a_job_run_gets_its_secret_in_the_launch_only(tmp_path: Path) -> None:
    store, secrets, core, driver, jobs = world(tmp_path)
    secrets.put("db/password", VALUE.encode(), "operator")
    jobs.create_job(parse_job(JOB))
    jobs.start_run("backup")
    core.handle_offers([offer(1)])
    [info] = launched(driver)
    variables = info["command"]["environment"]["variables"]
    secret = [v for v in variables if v["name"] == "DB_PW"]
    assert secret == [{"name": "DB_PW", "type": "SECRET", "secret": value_secret(VALUE.encode())}]
    assert not any(v.get("value") == VALUE for v in variables)
    # The agent's executor turns it into the task's environment, and only there.
    env = command_env({"PATH": "/bin"}, info["command"])
    assert env["DB_PW"] == VALUE and env["PLAIN"] == "x"
    # What the scheduler keeps: the version given, never the value.
    record = core.get(info["task_id"]["value"])
    assert record.secrets == {"db/password": 1}
    store.sync()
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert VALUE.encode() not in on_disk and base64.b64encode(VALUE.encode()) not in on_disk
    # What the master and the agent show and keep of it.
    task = Task(info["task_id"]["value"], "F1", "S1", None, info["name"], "*", Resources(info["resources"]), info)
    shown = json.dumps([task_json(task), legacy_task(task), checkpointed(info)])
    assert VALUE not in shown and base64.b64encode(VALUE.encode()).decode() not in shown


def test_the_warm_executor_gets_it_in_data_and_the_agent_keeps_no_data(tmp_path: Path) -> None:
    store, secrets, core, driver, jobs = world(tmp_path, executor_command="dockyard executor")
    secrets.put("db/password", VALUE.encode(), "operator")
    jobs.create_job(parse_job(JOB))
    jobs.start_run("backup")
    core.handle_offers([offer(1)])
    [info] = launched(driver)
    command = json.loads(base64.b64decode(info["data"]))["command"]
    assert command_env({}, command)["DB_PW"] == VALUE
    assert "data" not in checkpointed(info) and "data" in info


def test_secret_volumes_are_mesos_secret_volumes_and_views_show_a_marker(tmp_path: Path) -> None:
    store, secrets, core, driver, jobs = world(tmp_path)
    secrets.put("tls/key", b"\x00binary\xff", "operator")
    app = parse_app({"id": "/web", "cmd": "sleep 60", "cpus": 0.1, "mem": 32,
                     "secrets": {"key": {"source": "tls/key"}},
                     "container": {"type": "MESOS", "docker": {"image": "busybox"},
                                   "volumes": [{"containerPath": "certs/key.pem", "secret": "key"},
                                               {"containerPath": "data", "mode": "RW"}]}})
    request = task_request(app)
    assert [v["container_path"] for v in request.container["volumes"]] == ["data"]
    core.submit(request)
    core.handle_offers([offer(1)])
    [info] = launched(driver)
    volumes = info["container"]["volumes"]
    assert volumes[-1] == {"container_path": "certs/key.pem", "mode": "RO",
                           "source": {"type": "SECRET", "secret": value_secret(b"\x00binary\xff")}}
    assert request.container["volumes"] == [{"container_path": "data", "mode": "RW"}], "the request is untouched"
    hidden = redacted(info)
    assert hidden["container"]["volumes"][-1]["source"]["secret"]["value"]["data"] == MARKER
    assert info["container"]["volumes"][-1]["source"]["secret"]["value"]["data"] != MARKER, "copied, not changed"
    plain = {"container": {"volumes": [{"container_path": "data"}]}}
    assert redacted(plain) is plain


def test_a_secret_gone_since_the_deploy_fails_the_task_naming_it(tmp_path: Path) -> None:
    store, secrets, core, driver, jobs = world(tmp_path)
    secrets.put("db/password", VALUE.encode(), "operator")
    jobs.create_job(parse_job(JOB))
    secrets.delete("db/password", "operator")
    run = jobs.start_run("backup")
    core.handle_offers([offer(1)])
    assert not launched(driver)
    [record] = core.tasks(run.owner)
    assert record.state.value == "TASK_ERROR"
    assert "db/password" in record.message and "no longer exists" in record.message


def test_specs_name_unknown_sources_and_refuse_what_the_caller_may_not_use(tmp_path: Path) -> None:
    store, secrets, core, driver, jobs = world(tmp_path)
    with pytest.raises(SpecError) as caught:
        jobs.create_job(parse_job(JOB))
    assert caught.value.field == "/run/secrets/pw/source" and "db/password" in caught.value.message
    acls = tmp_path / "acls.json"
    operator_only = [{"principals": {"values": ["operator"]}, "paths": {"type": "ANY"}}]
    acls.write_text(json.dumps({"permissive": False, "reference_secrets": operator_only,
                                "write_secrets": operator_only}))
    jobs.secrets = open_secrets(store, str(tmp_path / "key"), str(acls))
    jobs.secrets.put("db/password", b"v", "operator")
    with acting_as("someone-else"), pytest.raises(Forbidden):
        jobs.create_job(parse_job(JOB))
    with acting_as("operator"):
        jobs.create_job(parse_job(JOB))
    jobs.secrets = SecretsOff()
    with pytest.raises(SpecError, match="Feature secrets is not enabled"):
        jobs.put_job(parse_job(JOB))


def test_executor_refuses_malformed_secrets() -> None:
    bad_base64 = {"environment": {"variables": [{"name": "X", "type": "SECRET",
                                                 "secret": {"type": "VALUE", "value": {"data": "%%%"}}}]}}
    with pytest.raises(SecretFormatError, match="not base64"):
        command_env({}, bad_base64)
    reference = {"environment": {"variables": [{"name": "X", "type": "SECRET",
                                                "secret": {"type": "REFERENCE", "reference": {"name": "/db"}}}]}}
    with pytest.raises(SecretFormatError, match="cannot resolve references"):
        command_env({}, reference)
    nul = {"environment": {"variables": [{"name": "X", "type": "SECRET", "secret": value_secret(b"a\0b")}]}}
    with pytest.raises(SecretFormatError, match="NUL"):
        command_env({}, nul)
