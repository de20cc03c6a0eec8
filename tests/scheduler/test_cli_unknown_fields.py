"""Misspelt field names are pointed out, with the nearest known one, while the spec is still
accepted (Marathon and Metronome ignore unknown keys): the pure detection of the spec modules.
The CLI printing them against a real scheduler is in test_cli_cluster.py."""
from __future__ import annotations

from scheduler.jobs.specs import parse_job, unknown_fields as job_unknown, unknown_schedule_fields
from scheduler.services.specs import parse_app, unknown_fields as app_unknown


def test_an_apps_misspelt_fields_are_named_with_the_nearest_known_one() -> None:
    document = {"id": "/web", "cmd": "sleep 1", "instnaces": 3, "memory": 16, "Cpus": 2,
                "container": {"type": "MESOS", "docker": {"imgae": "busybox"}},
                "healthChecks": [{"protocl": "HTTP"}], "upgradeStrategy": {"minimumHealthCapacty": 0.5},
                "secrets": {"pw": {"sourc": "db/pw"}}, "zzz": 1}
    assert app_unknown(document) == [
        "unknown field 'instnaces' (did you mean 'instances'?)",
        "unknown field 'memory' (did you mean 'mem'?)",
        "unknown field 'Cpus' (did you mean 'cpus'?)",
        "unknown field 'container.docker.imgae' (did you mean 'container.docker.image'?)",
        "unknown field 'healthChecks[0].protocl' (did you mean 'healthChecks[0].protocol'?)",
        "unknown field 'upgradeStrategy.minimumHealthCapacty' (did you mean "
        "'upgradeStrategy.minimumHealthCapacity'?)",
        "unknown field 'secrets.pw.sourc' (did you mean 'secrets.pw.source'?)",
        "unknown field 'zzz'",
    ]
    assert parse_app({k: v for k, v in document.items() if k not in ("container", "secrets", "healthChecks")}
                     ).instances == 1  # still accepted, the misspelt field ignored


def test_what_marathon_knows_or_answers_is_not_reported() -> None:
    """An app as GET answers it, sent back, and Marathon's fields dockyard does not use."""
    app = parse_app({"id": "/web", "cmd": "sleep 1", "healthChecks": [{"protocol": "TCP"}],
                     "container": {"type": "DOCKER", "docker": {"image": "busybox"}}}).out()
    answered = {**app, "tasks": [], "deployments": [], "tasksRunning": 0, "tasksStaged": 0, "tasksHealthy": 0,
                "tasksUnhealthy": 0, "versionInfo": {}, "lastTaskFailure": None}
    assert app_unknown(answered) == []
    assert app_unknown({"id": "/a", "cmd": "x", "ports": [0], "uris": [], "ipAddress": None, "residency": None,
                        "env": {"ANY_NAME": "v"}, "labels": {"free-form": "v"},
                        "container": {"docker": {"image": "x", "network": "HOST", "portMappings": [
                            {"containerPort": 80, "networkNames": []}]}, "volumes": [
                            {"containerPath": "/d", "persistent": {"size": 1}}]}}) == []
    assert app_unknown({"id": "/a", "cmd": "x", "container": {"docker": {"image": "x", "portMappings": [
        {"containerPrt": 80}]}}}) == [
        "unknown field 'container.docker.portMappings[0].containerPrt' "
        "(did you mean 'container.docker.portMappings[0].containerPort'?)"]


def test_a_jobs_misspelt_fields_are_named_by_their_json_names() -> None:
    document = {"id": "backup", "run": {"cmd": "true", "memory": 64, "cpu": 0.5,
                                        "restart": {"policy": "NEVER", "activeDeadlineSecond": 5},
                                        "placement": {"constraints": [{"attribute": "a", "operator": "IS",
                                                                       "valeu": "b"}]}},
                "schedule": [{"id": "nightly", "cron": "0 3 * * *"}]}
    assert job_unknown(document) == [
        "unknown field 'run.memory' (did you mean 'run.mem'?)",
        "unknown field 'run.cpu' (did you mean 'run.cpus'?)",
        "unknown field 'run.restart.activeDeadlineSecond' (did you mean 'run.restart.activeDeadlineSeconds'?)",
        "unknown field 'run.placement.constraints[0].valeu' (did you mean 'run.placement.constraints[0].value'?)",
        "unknown field 'schedule' (did you mean 'schedules'?)",
    ]
    accepted = {**document, "run": {k: v for k, v in document["run"].items() if k != "placement"}}
    assert parse_job(accepted).run.mem == 128  # accepted; `memory` is not `mem`
    known = {"id": "backup", "activeRuns": [], "historySummary": {},
             "run": {"cmd": "true", "maxLaunchDelay": 10, "networks": [], "ucr": {"image": {"id": "x"},
                                                                                  "privileged": False}},
             "schedules": [{"id": "s", "cron": "* * * * *", "nextRunAt": "2026-01-01T00:00:00.000Z"}]}
    assert job_unknown(known) == []
    assert unknown_schedule_fields({"id": "s", "cron": "* * * * *", "timeZone": "UTC"}) == [
        "unknown field 'timeZone' (did you mean 'timezone'?)"]
