"""How the API answers, against a real scheduler: misspelt fields in a spec are accepted (as
Marathon and Metronome ignore unknown keys) but named in the answer (a `Warning` header each and
a `warnings` list); a change a browser sends from another site's page is refused.

No master is needed: the API validates and stores without one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from framework.security.bundle import Bundle
from tests.support.procs import Process, dockyard, free_port, wait_for


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    work = tmp_path_factory.mktemp("warnings")
    bundle = Bundle(work / "security").ensure()
    port = free_port()
    process = Process(dockyard("scheduler", "--master", "127.0.0.1:1", "--port", str(port),
                               "--data-dir", str(work / "data"), "--http-users", str(bundle.users_file)),
                      work / "scheduler.log")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                          auth=(bundle.operator.principal, bundle.operator.secret))

    def serving() -> bool:
        assert process.alive(), process.output()[-3000:]
        try:
            return client.get("/ping").status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_for(serving, timeout=60, what="the scheduler serving /ping")
        yield client
    finally:
        client.close()
        process.stop()


def warnings_of(response: httpx.Response) -> list[str]:
    return response.headers.get_list("warning")


def test_an_app_with_misspelt_fields_is_created_and_told_which(api: httpx.Client) -> None:
    answer = api.post("/v2/apps", json={"id": "/typo", "cmd": "sleep 100", "instnaces": 3, "memory": 16})
    assert answer.status_code == 201, answer.text
    assert warnings_of(answer) == [
        '199 dockyard "unknown field \'instnaces\' (did you mean \'instances\'?)"',
        '199 dockyard "unknown field \'memory\' (did you mean \'mem\'?)"']
    assert answer.json()["warnings"] == ["unknown field 'instnaces' (did you mean 'instances'?)",
                                         "unknown field 'memory' (did you mean 'mem'?)"]
    assert answer.json()["instances"] == 1  # the misspelt field is ignored, as Marathon ignores it
    updated = api.put("/v2/apps/typo?force=true", json={"cmd": "sleep 200", "contaner": {}})
    assert updated.status_code == 200, updated.text
    assert "unknown field 'contaner' (did you mean 'container'?)" in updated.json()["warnings"]
    clean = api.put("/v2/apps/typo?force=true", json={"cmd": "sleep 300"})
    assert "warning" not in clean.headers and "warnings" not in clean.json()


def test_a_refused_app_still_names_its_misspelt_fields(api: httpx.Client) -> None:
    answer = api.post("/v2/apps", json={"id": "/bad", "cmd": "x", "cpus": -1, "instnaces": 2})
    assert answer.status_code == 422
    assert answer.json()["warnings"] == ["unknown field 'instnaces' (did you mean 'instances'?)"]


def test_a_job_and_a_schedule_with_misspelt_fields(api: httpx.Client) -> None:
    job = api.post("/v1/jobs", json={"id": "typo", "run": {"cmd": "true", "cpus": 0.1, "mem": 32, "disk": 0,
                                                           "memory": 32}})
    assert job.status_code == 201, job.text
    assert warnings_of(job) == ['199 dockyard "unknown field \'run.memory\' (did you mean \'run.mem\'?)"']
    schedule = api.post("/v1/jobs/typo/schedules", json={"id": "nightly", "cron": "0 3 * * *", "timezon": "UTC"})
    assert schedule.status_code == 201, schedule.text
    assert schedule.json()["warnings"] == ["unknown field 'timezon' (did you mean 'timezone'?)"]


def test_a_change_sent_from_another_sites_page_is_refused(api: httpx.Client) -> None:
    """A browser sends the admin's cached Basic credentials with a form another site posts (a
    `text/plain` body needs no CORS permission); its Sec-Fetch-Site or Origin gives it away."""
    body = '{"id": "/csrf", "cmd": "sleep 100"}'
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://evil.example"}, {"Origin": "null"}):
        answer = api.post("/v2/apps", content=body, headers={"Content-Type": "text/plain", **headers})
        assert answer.status_code == 403, (headers, answer.text)
        assert "may not change anything here" in answer.json()["message"]
        assert api.delete("/v2/apps/typo", headers=headers).status_code == 403
    assert api.get("/v2/apps/csrf").status_code == 404
    assert api.get("/v2/apps", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # reading is fine
    own = api.post("/v2/apps", json={"id": "/csrf", "cmd": "sleep 100"},
                   headers={"Sec-Fetch-Site": "same-origin", "Origin": str(api.base_url).rstrip("/")})
    assert own.status_code == 201, own.text
