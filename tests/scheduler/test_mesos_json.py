"""Mesos JSON on the scheduler's side: one builder for what a launch says, one reader of agents."""
from __future__ import annotations

from scheduler.jobs.manager import task_request as job_task
from scheduler.jobs.runs import JobRun
from scheduler.jobs.specs import parse_job
from scheduler.mesos_json import agent_view, agent_views_from_state, task_info
from scheduler.services.instances import task_request as app_task
from scheduler.services.specs import parse_app


def test_a_job_and_an_app_asking_for_the_same_launch_the_same_command_and_container() -> None:
    job = parse_job({"id": "same", "run": {
        "cmd": "run", "user": "nobody", "cpus": 0.5, "mem": 64,
        "artifacts": [{"uri": "http://files/tool.tgz", "executable": True, "extract": False, "cache": True}],
        "docker": {"image": "busybox:latest", "forcePullImage": True},
        "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RO"}]}})
    app = parse_app({"id": "/same", "cmd": "run", "user": "nobody", "cpus": 0.5, "mem": 64,
                     "fetch": [{"uri": "http://files/tool.tgz", "executable": True, "extract": False, "cache": True}],
                     "container": {"type": "MESOS", "docker": {"image": "busybox:latest", "forcePullImage": True},
                                   "volumes": [{"containerPath": "/data", "hostPath": "/srv", "mode": "RO"}]}})
    from_job = job_task(job, JobRun(id="r1", job_id="same", created_at=0.0, instances=1), 0, 1)
    from_app = app_task(app)
    assert from_job.command == from_app.command == {
        "shell": True, "value": "run", "user": "nobody",
        "uris": [{"value": "http://files/tool.tgz", "extract": False, "executable": True, "cache": True}]}
    assert from_job.container == from_app.container == {
        "type": "MESOS", "volumes": [{"container_path": "/data", "host_path": "/srv", "mode": "RO"}],
        "mesos": {"image": {"type": "DOCKER", "docker": {"name": "busybox:latest"}, "cached": False}}}
    infos = [task_info(r, "S1", [31000], None, hostname="h1") for r in (from_job, from_app)]
    assert infos[0]["container"] == infos[1]["container"]
    assert {k: v for k, v in infos[0]["command"].items() if k != "environment"} == \
        {k: v for k, v in infos[1]["command"].items() if k != "environment"}


def test_argv_and_entrypoint_commands_and_no_container_for_a_plain_command() -> None:
    job = parse_job({"id": "argv", "run": {"args": ["/bin/echo", "hi"], "cpus": 0.1, "mem": 32}})
    app = parse_app({"id": "/argv", "args": ["/bin/echo", "hi"], "cpus": 0.1, "mem": 32})
    run = JobRun(id="r1", job_id="argv", created_at=0.0, instances=1)
    assert job_task(job, run, 0, 1).command == app_task(app).command == {
        "shell": False, "value": "/bin/echo", "arguments": ["/bin/echo", "hi"]}
    assert job_task(job, run, 0, 1).container is None and app_task(app).container is None
    image_only = parse_app({"id": "/image", "cpus": 0.1, "mem": 32,
                            "container": {"type": "DOCKER", "docker": {"image": "busybox:latest"}}})
    assert app_task(image_only).command == {"shell": False}  # the image's entrypoint


def test_a_mesos_masters_state_reads_as_the_agents_offers_do() -> None:
    """A Mesos master's `/state` writes SCALAR attributes as numbers and sets with spaces."""
    state = {"slaves": [
        {"id": "S1", "hostname": "h1", "active": True,
         "attributes": {"zone": "{a,b}", "slots": "[1-5]", "level": 3.0, "rack": "r1"},
         "resources": {"cpus": 4.0, "mem": 4096.0, "disk": 1000.0, "gpus": 0.0,
                       "ports": "[31000-31009, 31020-31029]", "ids": "{x, y}"},
         "used_resources": {"cpus": 1.5, "mem": 1024.0, "disk": 0.0, "gpus": 0.0, "ports": "[31000-31004]"}},
        {"id": "S2", "hostname": "h2", "active": False, "attributes": {},
         "resources": {"cpus": 4.0, "mem": 4096.0}, "used_resources": {}},
    ]}
    offer = {"id": {"value": "O1"}, "agent_id": {"value": "S1"}, "hostname": "h1",
             "attributes": [{"name": "zone", "type": "SET", "set": {"item": ["a", "b"]}},
                            {"name": "slots", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 5}]}},
                            {"name": "level", "type": "SCALAR", "scalar": {"value": 3}},
                            {"name": "rack", "type": "TEXT", "text": {"value": "r1"}}],
             "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 2.5}, "role": "*"},
                           {"name": "mem", "type": "SCALAR", "scalar": {"value": 3072}, "role": "*"},
                           {"name": "disk", "type": "SCALAR", "scalar": {"value": 1000}, "role": "*"},
                           {"name": "ports", "type": "RANGES", "role": "*", "ranges": {"range": [
                               {"begin": 31005, "end": 31009}, {"begin": 31020, "end": 31029}]}}]}
    [seen] = agent_views_from_state(state)  # the inactive agent offers nothing: not seen either
    offered = agent_view([offer])
    assert seen.attributes == offered.attributes == {"zone": "{a,b}", "slots": "[1-5]", "level": "3", "rack": "r1"}
    assert (seen.agent_id, seen.hostname, seen.role) == (offered.agent_id, offered.hostname, offered.role)
    assert (seen.cpus, seen.mem, seen.disk, seen.gpus) == (offered.cpus, offered.mem, offered.disk, offered.gpus)
    assert seen.port_ranges == offered.port_ranges == [(31005, 31009), (31020, 31029)]
    assert (seen.total_cpus, seen.total_mem) == (4.0, 4096.0)
