"""The UI's pure parts: form documents and where 422 details go, the cross-site check, what
an event concerns, the runs chart, and the template filters."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from scheduler.ui import forms
from scheduler.ui.guard import cross_site
from scheduler.ui.model import run_chart
from scheduler.ui.render import ago, app_href, duration, environment, task_href
from scheduler.ui.stream import touched


def test_a_filled_field_replaces_what_the_json_says_and_numbers_stay_as_typed() -> None:
    form = {"definition": '{"id": "/old", "cmd": "old", "labels": {"a": "b"}}', "id": " /new ", "cmd": "sleep 1",
            "instances": "3", "cpus": "0.5", "mem": "three"}
    assert forms.app_document(form) == {"id": "/new", "cmd": "sleep 1", "labels": {"a": "b"}, "instances": 3,
                                        "cpus": 0.5, "mem": "three"}
    assert forms.app_document({"definition": "", "id": "", "cpus": ""}) == {}
    with pytest.raises(forms.FormError, match="not JSON"):
        forms.app_document({"definition": "{"})
    with pytest.raises(forms.FormError, match="JSON object"):
        forms.app_document({"definition": "[1]"})


def test_a_job_form_fills_run_and_the_first_schedule() -> None:
    form = {"definition": '{"schedules": [{"id": "s", "cron": "bad", "timezone": "UTC"}, {"id": "t", "cron": "1 * * * *"}]}',
            "id": "a.b", "cmd": "true", "cpus": "1", "cron": "0 2 * * *"}
    assert forms.job_document(form) == {
        "id": "a.b", "run": {"cmd": "true", "cpus": 1},
        "schedules": [{"id": "s", "cron": "0 2 * * *", "timezone": "UTC"}, {"id": "t", "cron": "1 * * * *"}]}
    assert forms.job_document({"cron": "* * * * *"})["schedules"] == [{"id": "default", "cron": "* * * * *"}]


def test_each_422_detail_goes_next_to_the_field_it_names() -> None:
    details = [{"path": "/cpus", "errors": ["too small"]}, {"path": "/healthChecks(0)/protocol", "errors": ["bad"]},
               {"path": "/id", "errors": ["x", "y"]}, {"path": "/args", "errors": []}]
    by_field, rest = forms.place_errors(details, forms.APP_FIELDS)
    assert by_field == {"cpus": ["too small"], "id": ["x", "y"], "cmd": ["invalid"]}
    assert rest == [{"path": "/healthChecks(0)/protocol", "errors": ["bad"]}]
    by_field, _ = forms.place_errors([{"path": "/schedules/0/cron", "errors": ["no"]},
                                      {"path": "/run", "errors": ["need cmd"]}], forms.JOB_FIELDS)
    assert by_field == {"cron": ["no"], "cmd": ["need cmd"]}


def _request(**headers: str) -> SimpleNamespace:
    return SimpleNamespace(headers={k.lower().replace("_", "-"): v for k, v in headers.items()})


def test_only_the_uis_own_origin_may_post() -> None:
    assert cross_site(_request(sec_fetch_site="same-origin")) is None
    assert cross_site(_request(sec_fetch_site="none")) is None
    assert "same-site" in cross_site(_request(sec_fetch_site="same-site", origin="http://127.0.0.1:8080", host="127.0.0.1:8080"))
    assert cross_site(_request(sec_fetch_site="cross-site")) is not None
    # without Sec-Fetch-Site, the Origin decides when there is one
    assert cross_site(_request(origin="http://127.0.0.1:8080", host="127.0.0.1:8080")) is None
    assert cross_site(_request(origin="http://127.0.0.1:31000", host="127.0.0.1:8080")) is not None
    assert cross_site(_request(origin="null", host="127.0.0.1:8080")) is not None
    assert cross_site(_request(host="127.0.0.1:8080")) is None  # the form token decides


def test_what_an_event_concerns() -> None:
    assert touched({"eventType": "status_update_event", "appId": "/a", "taskId": "a.1"}) == {
        "type": "status_update_event", "apps": ["/a"], "tasks": ["a.1"], "jobs": [], "runs": []}
    plan = {"steps": [{"actions": [{"action": "ScaleApplication", "app": "/b"}, {"app": "/a"}]}]}
    assert touched({"eventType": "deployment_info", "plan": plan})["apps"] == ["/a", "/b"]
    assert touched({"eventType": "api_post_event", "appDefinition": {"id": "/c"}})["apps"] == ["/c"]
    job = touched({"eventType": "job_run_updated", "jobId": "j", "runId": "r", "task": {"id": "j_r.0.1"}})
    assert (job["jobs"], job["runs"], job["tasks"]) == (["j"], ["r"], ["j_r.0.1"])
    assert touched({"eventType": "odd", "appId": 3, "plan": "x"})["apps"] == []


def test_the_runs_chart_scales_bars_to_the_longest_run() -> None:
    chart = run_chart([{"id": "1", "status": "SUCCESS", "seconds": 10}, {"id": "2", "status": "FAILED", "seconds": 5},
                       {"id": "3", "status": "SUCCESS", "seconds": 0}], width=12, height=48)
    assert [b["height"] for b in chart["bars"]] == [44, 22, 3]
    assert [b["x"] for b in chart["bars"]] == [0, 12, 24]
    assert (chart["success"], chart["failure"], chart["width"]) == (2, 1, 36)
    assert run_chart([])["bars"] == []


def test_filters_and_escaping() -> None:
    assert duration(0.25) == "250ms" and duration(42) == "42s" and duration(185) == "3m 5s"
    assert duration(7800) == "2h 10m" and duration(7800, coarse=True) == "2h"
    assert ago(100.0, now=160.0) == "1m ago" and ago(200.0, now=160.0) == "in 40s" and ago(None) == "-"
    assert app_href("/a b/c") == "/ui/apps/a%20b/c" and task_href("x/y?z") == "/ui/tasks/x%2Fy%3Fz"
    rendered = environment().from_string('<a title="{{ v }}">{{ v }}</a>').render(v='"><script>x</script>')
    assert "<script>" not in rendered and "&#34;&gt;&lt;script&gt;" in rendered
