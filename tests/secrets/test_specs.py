"""Marathon's and Metronome's secrets forms: accepted as written, refused with the field named."""
from __future__ import annotations

import pytest

from scheduler.jobs.specs import SpecInvalid, parse_job
from scheduler.secrets.refs import SecretUse, app_uses, job_uses
from scheduler.services.instances import task_request
from scheduler.services.specs import AppSpecError, parse_app

APP = {"id": "/app", "cmd": "sleep 100", "env": {"DB_PW": {"secret": "dbpw"}, "N": 3},
       "container": {"type": "MESOS", "docker": {"image": "busybox"},
                     "volumes": [{"containerPath": "path/to/pw", "secret": "dbpw"}]},
       "secrets": {"dbpw": {"source": "databasepassword"}}}


def test_marathon_form_round_trips_and_names_its_uses() -> None:
    app = parse_app(APP)
    out = app.out()
    assert out["env"] == {"DB_PW": {"secret": "dbpw"}, "N": "3"}, "a reference stays one; numbers become text"
    assert out["secrets"] == {"dbpw": {"source": "databasepassword"}}
    assert {"containerPath": "path/to/pw", "secret": "dbpw"}.items() <= out["container"]["volumes"][0].items()
    assert app_uses(app) == [SecretUse("dbpw", "databasepassword", env="DB_PW"),
                             SecretUse("dbpw", "databasepassword", path="path/to/pw")]
    request = task_request(app)
    assert "DB_PW" not in request.env and request.secrets == app_uses(app)
    again = parse_app(out)
    assert (again.env, again.secrets, again.container) == (app.env, app.secrets, app.container)


@pytest.mark.parametrize("change, path, fragment", [
    ({"secrets": {}}, "/env/DB_PW", "references an undefined secret 'dbpw'"),
    ({"env": {}, "secrets": {"other": {"source": "x"}}}, "/container/volumes(0)/secret", "undefined secret 'dbpw'"),
    ({"container": {"volumes": [{"containerPath": "p", "secret": "dbpw"}]}}, "/container/volumes(0)/secret",
     "only supported by UCR"),
    ({"secrets": {"dbpw": {"source": ""}}}, "/secrets/dbpw/source", "at least 1"),
    ({"env": {"X": {"value": "y"}}}, "/env", '{"secret": "<name>"}'),
    ({"container": {"docker": {"image": "b"}, "volumes": [{"containerPath": "p", "secret": "dbpw",
                                                           "hostPath": "/etc"}]}},
     "/container/volumes(0)", "either hostPath or secret"),
])
def test_marathon_errors_name_the_field(change: dict, path: str, fragment: str) -> None:
    with pytest.raises(AppSpecError) as caught:
        parse_app({**APP, **change})
    details = {d["path"]: " ".join(d["errors"]) for d in caught.value.details}
    assert path in details and fragment in details[path], details


def test_metronome_form() -> None:
    job = parse_job({"id": "j", "run": {"cmd": "true", "env": {"SECRET_ENV": {"secret": "s"}},
                                        "ucr": {"image": {"id": "busybox"}},
                                        "volumes": [{"containerPath": "mnt/test", "secret": "s"}],
                                        "secrets": {"s": {"source": "/mysecret"}}}})
    assert job.dump()["run"]["env"] == {"SECRET_ENV": {"secret": "s"}}
    assert job_uses(job.run) == [SecretUse("s", "mysecret", env="SECRET_ENV"),
                                 SecretUse("s", "mysecret", path="mnt/test")]
    with pytest.raises(SpecInvalid, match="File based secrets are only supported by UCR"):
        parse_job({"id": "j", "run": {"cmd": "true", "docker": {"image": "busybox"},
                                      "volumes": [{"containerPath": "a", "secret": "s"}],
                                      "secrets": {"s": {"source": "x"}}}})
