"""Job spec validation: Metronome's shapes, errors that name the field, JSON or YAML."""
from __future__ import annotations

import pytest

from scheduler.jobs.specs import SpecInvalid, parse_job, parse_schedule


def test_minimal_job_gets_metronome_defaults() -> None:
    spec = parse_job({"id": "backup.nightly", "run": {"cmd": "true"}})
    assert spec.run.cpus == 1.0 and spec.run.mem == 128 and spec.run.restart.policy.value == "NEVER"
    assert spec.run.instances == 1


def test_yaml_is_accepted() -> None:
    spec = parse_job("id: hello\nrun:\n  cmd: echo hi\n  cpus: 0.1\n  mem: 32\n")
    assert spec.run.cmd == "echo hi" and spec.run.cpus == 0.1


@pytest.mark.parametrize("document,path,fragment", [
    ({"id": "x", "run": {"cmd": "true", "cpus": 0.001}}, "/run/cpus", "greater than or equal to 0.01"),
    ({"id": "x", "run": {"cmd": "true", "mem": 8}}, "/run/mem", "32"),
    ({"id": "Bad_Id", "run": {"cmd": "true"}}, "/id", "lowercase"),
    ({"id": "x", "run": {}}, "/run", "one of cmd, args"),
    ({"id": "x", "run": {"cmd": "true", "restart": {"policy": "SOMETIMES"}}}, "/run/restart/policy", "NEVER"),
    ({"id": "x", "run": {"cmd": "true", "placement": {"constraints": [
        {"attribute": "rack", "operator": "NEAR", "value": "a"}]}}}, "/run/placement/constraints/0",
     "unknown operator"),
    ({"id": "x", "run": {"cmd": "true", "env": {"A": {"secret": "s"}}}}, "/run/secrets",
     "referenced, but undefined: s"),
    ({"id": "x", "run": {"cmd": "true", "env": {"A": {"value": "s"}}}}, "/run/env", '{"secret": "<name>"}'),
    ({"id": "x"}, "/run", "required"),
])
def test_errors_name_the_field(document: dict, path: str, fragment: str) -> None:
    with pytest.raises(SpecInvalid) as caught:
        parse_job(document)
    paths = {d["path"]: " ".join(d["errors"]) for d in caught.value.details}
    assert path in paths, paths
    assert fragment in paths[path]


@pytest.mark.parametrize("document,path", [
    ({"cron": "not a cron"}, "/cron"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "/timezone"),
    ({"cron": "* * * * *", "concurrencyPolicy": "SOMETIMES"}, "/concurrencyPolicy"),
])
def test_schedule_errors_name_the_field(document: dict, path: str) -> None:
    with pytest.raises(SpecInvalid) as caught:
        parse_schedule(document)
    assert path in {d["path"] for d in caught.value.details}
