"""The web UI in a real headless Chromium, against a secured embedded cluster and a real
scheduler process: deploy, watch, scale, logs, roll back, delete, jobs, roles, forms."""
from __future__ import annotations

import json
from typing import Any
from unittest import mock

from tests.support import scheduler as scheduler_support
from tests.support.scheduler import SchedulerProcess
from tests.ui.browser import Browser
from tests.ui.conftest import ui_scheduler_argv

HEALTH = {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 30, "delaySeconds": 0,
          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}


def web_command(python: str) -> str:
    return (f"echo hello from the web app; mkdir -p www && echo ok > www/index.html && "
            f"exec {python} -m http.server $PORT0 --bind 127.0.0.1 --directory www")


def web_app(app_id: str, python: str, instances: int = 1, **extra: Any) -> dict:
    return {"id": app_id, "cmd": web_command(python), "cpus": 0.1, "mem": 64, "instances": instances,
            "portDefinitions": [{"port": 0, "name": "http"}], "backoffSeconds": 0.5, "healthChecks": [HEALTH],
            **extra}


def healthy_rows(browser: Browser) -> int:
    return len(browser.find_all("#app-live .instances .health-healthy"))


def test_deploy_from_the_form_watch_scale_read_logs_roll_back_and_delete(admin: Browser, scheduler: SchedulerProcess,
                                                                        task_python: str, cluster: Any) -> None:
    admin.open("/ui/apps")
    admin.click("#new-app")
    admin.until(lambda: admin.path == "/ui/new/app", "the new-app form")
    admin.fill("#field-id", "/ui/web")
    admin.fill("#field-cmd", web_command(task_python))
    admin.fill("#field-instances", "1")
    admin.set_value("#field-definition", json.dumps({"portDefinitions": [{"port": 0, "name": "http"}],
                                                     "backoffSeconds": 0.5, "healthChecks": [HEALTH]}))

    # the dry run first: where the instance would go, nothing launched
    admin.click("#preview")
    admin.wait_text("#preview-result", "agents considered")
    assert admin.find_all("#preview-result tbody tr td")[1].text.startswith("agent"), admin.text("#preview-result")
    assert scheduler.call("GET", "/v2/apps")["apps"] == []

    # deploy, then watch it turn healthy on the same page, never reloaded
    admin.click("#deploy")
    admin.until(lambda: admin.path.startswith("/ui/apps/ui/web"), "the app's page after deploying")
    admin.mark()
    admin.until(lambda: healthy_rows(admin) == 1, "one healthy instance, live", timeout=60)
    assert admin.same_page(), "the page was reloaded instead of updated"
    assert "1/1 running" in admin.text("#app-live")

    # scale to 2: confirmed, then the second instance turns healthy live
    admin.fill("input[name=instances]", "2")
    admin.click("button[data-action=scale]", confirm=True)
    admin.until(lambda: "done=scaled" in admin.path, "the scaled page")
    admin.mark()
    admin.until(lambda: healthy_rows(admin) == 2, "two healthy instances, live", timeout=60)
    assert admin.same_page()

    # an instance's logs: stdout as printed, stderr followed live (each health check logs a line)
    admin.find("#app-live .instances tbody tr a").click()
    admin.until(lambda: admin.path.startswith("/ui/tasks/"), "the task page")
    admin.wait_text("#log-stdout", "hello from the web app")
    admin.mark()
    before = admin.text("#log-stderr").count('"GET / HTTP/1.1" 200')
    admin.until(lambda: admin.text("#log-stderr").count('"GET / HTTP/1.1" 200') >= before + 2,
                "new health-check lines in the followed stderr")
    assert admin.same_page()
    assert "RUNNING" in admin.text("#task-live")
    # the sandbox: into the directory the app serves, and a file of it downloaded
    task_page = admin.path
    admin.find("#sandbox a[href$='path=www']").click()
    admin.wait_text("#sandbox h2", "www")
    link = admin.find("#sandbox a[download]")
    assert link.text == "index.html"
    with scheduler.as_(cluster.operator).client() as client:
        answer = client.get(link.get_attribute("href"))
    assert answer.status_code == 200 and answer.text == "ok\n"
    assert answer.headers["content-disposition"] == 'attachment; filename="index.html"'
    assert "<script" not in answer.text and answer.headers["x-content-type-options"] == "nosniff"
    assert admin.path.startswith(task_page.split("?")[0])

    # roll back to the first version (1 instance), after comparing the two
    admin.open("/ui/apps/ui/web")
    admin.wait_text("#diff", '"instances": 2')
    assert '"instances": 1' in admin.text("#diff")
    rollbacks = admin.find_all("#versions button[data-action=rollback]")
    assert len(rollbacks) == 1, admin.text("#versions")
    rollbacks[0].click()
    admin.driver.switch_to.alert.accept()
    admin.until(lambda: "done=rolled-back" in admin.path, "the rolled-back page")
    admin.mark()
    admin.until(lambda: "1/1 running" in admin.text("#app-live") and healthy_rows(admin) == 1,
                "back to one instance, live", timeout=60)
    assert scheduler.call("GET", "/v2/apps/ui/web")["app"]["instances"] == 1

    # delete: confirmed, then the app leaves the list
    admin.click("button[data-action=delete]", confirm=True)
    admin.until(lambda: admin.path.startswith("/ui/apps?done=deleted"), "the apps list after deleting")
    admin.until(lambda: "/ui/web" not in admin.text("#apps-live"), "the app gone from the list")
    assert scheduler.status("GET", "/v2/apps/ui/web")[0] == 404


def test_a_cancelled_confirmation_changes_nothing(admin: Browser, scheduler: SchedulerProcess, task_python: str) -> None:
    scheduler.call("POST", "/v2/apps", web_app("/ui/kept", task_python))
    admin.open("/ui/apps/ui/kept")
    admin.click("button[data-action=delete]", confirm=False)
    assert admin.path == "/ui/apps/ui/kept"
    assert scheduler.status("GET", "/v2/apps/ui/kept")[0] == 200


def test_run_a_job_see_it_finish_read_its_log_and_stop_another_run(admin: Browser, scheduler: SchedulerProcess) -> None:
    admin.open("/ui/jobs")
    admin.click("#new-job")
    admin.fill("#field-id", "ui.hello")
    admin.fill("#field-cmd", "echo job says hello")
    admin.click("#create")
    admin.until(lambda: admin.path.startswith("/ui/jobs/ui.hello"), "the job's page")
    admin.click("button[data-action=run]", confirm=True)
    admin.until(lambda: "done=run-started" in admin.path, "the run started")
    admin.mark()
    admin.wait_text("#job-live .runs", "SUCCESS", timeout=60)
    assert admin.same_page()
    assert "1 succeeded" in admin.text("#job-live")
    assert admin.find_all("#run-chart rect.bar-success")
    admin.find("#job-live .runs a").click()
    admin.wait_text("#log-stdout", "job says hello")

    scheduler.call("POST", "/v1/jobs", {"id": "ui.sleeper", "run": {"cmd": "sleep 300", "cpus": 0.1, "mem": 32}})
    admin.open("/ui/jobs/ui.sleeper")
    admin.click("button[data-action=run]", confirm=True)
    admin.until(lambda: admin.find_all("button[data-action=stop]"), "a Stop button for the active run")
    admin.wait_text("#job-live .runs", "TASK_RUNNING".replace("TASK_", ""))
    admin.click("button[data-action=stop]", confirm=True)
    admin.until(lambda: "done=run-stopped" in admin.path, "the run stopping")
    admin.wait_text("#job-live .runs", "FAILED", timeout=30)
    runs = scheduler.call("GET", "/v1/jobs/ui.sleeper/runs?all=true")
    assert [r["status"] for r in runs] == ["FAILED"], runs


def test_a_422_is_shown_next_to_the_field_it_names(admin: Browser, scheduler: SchedulerProcess) -> None:
    admin.open("/ui/new/app")
    admin.fill("#field-id", "/ui/bad")
    admin.fill("#field-cmd", "sleep 10")
    admin.fill("#field-cpus", "-1")
    admin.set_value("#field-definition", '{"healthChecks": [{"protocol": "CARRIER_PIGEON"}]}')
    admin.click("#deploy")
    admin.wait_text("#form-message", "Object is not valid")
    assert "greater than or equal" in admin.text(".field[data-field=cpus] .field-error")
    assert admin.text(".field[data-field=id] .field-error") == ""
    assert "/healthChecks(0)/protocol" in admin.text(".field[data-field=definition]")
    # what was typed is kept, and nothing was created
    assert admin.find("#field-cpus").get_attribute("value") == "-1"
    assert scheduler.status("GET", "/v2/apps/ui/bad")[0] == 404

    admin.set_value("#field-definition", '{"healthChecks": [')
    admin.click("#deploy")
    admin.wait_text(".field[data-field=definition] .field-error", "not JSON")

    admin.open("/ui/new/job")
    admin.fill("#field-id", "Not A Job Id")
    admin.fill("#field-cmd", "true")
    admin.fill("#field-cron", "every tuesday")
    admin.click("#create")
    admin.wait_text(".field[data-field=id] .field-error", "lowercase")
    assert "cron" in admin.text(".field[data-field=cron] .field-error")


def test_a_viewer_sees_no_action_and_a_direct_post_answers_403(viewer: Browser, scheduler: SchedulerProcess,
                                                              cluster: Any, task_python: str) -> None:
    scheduler.call("POST", "/v2/apps", web_app("/ui/watched", task_python))
    scheduler.call("POST", "/v1/jobs", {"id": "ui.watched", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}})
    for path in ("/ui/", "/ui/apps", "/ui/apps/ui/watched", "/ui/jobs", "/ui/jobs/ui.watched", "/ui/deployments",
                 "/ui/agents", "/ui/new/app", "/ui/new/job"):
        viewer.open(path)
        viewer.until(lambda: viewer.find_all("h1"), f"{path} rendered")
        assert viewer.text(".role") == "viewer"
        assert not viewer.find_all("button[data-action]"), (path, viewer.text())
        assert not viewer.find_all("#new-app, #new-job, #deploy, #create"), path
        posting = [f.get_attribute("action") for f in viewer.find_all("form[method=post]")]
        assert all(action.endswith("/ui/new/app/preview") for action in posting), (path, posting)
    # the token a viewer's page carries does not make a post pass: the gate refuses it first
    viewer.open("/ui/new/app")
    token = viewer.find("input[name=csrf]").get_attribute("value")
    as_viewer = scheduler.as_(cluster.bundle.viewer)
    form = {"Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"}
    for path, body in (("/ui/apps/ui/watched", f"csrf={token}&action=delete"),
                       ("/ui/new/app", f"csrf={token}&id=/ui/viewer-made&cmd=sleep+1"),
                       ("/ui/jobs/ui.watched", f"csrf={token}&action=run"),
                       ("/ui/deployments/anything", f"csrf={token}&action=rollback")):
        status, _, raw = as_viewer.call("POST", path, body.encode(), headers=form)
        assert status == 403, (path, status, raw[:300])
    assert scheduler.status("GET", "/v2/apps/ui/watched")[0] == 200
    assert scheduler.call("GET", "/v1/jobs/ui.watched/runs") == []
    # and the preview (a dry run) is open to viewers, as POST /dockyard/v1/plan is
    viewer.fill("#field-id", "/ui/preview-only")
    viewer.fill("#field-cmd", "sleep 1")
    viewer.click("#preview")
    viewer.wait_text("#preview-result", "agents considered")
    assert scheduler.status("GET", "/v2/apps/ui/preview-only")[0] == 404


def test_every_page_loads_without_a_console_error(admin: Browser, scheduler: SchedulerProcess, task_python: str,
                                                  cluster: Any) -> None:
    scheduler.call("POST", "/v2/apps", web_app("/ui/pages", task_python))
    scheduler.call("POST", "/v1/jobs", {"id": "ui.pages", "run": {"cmd": "echo done", "cpus": 0.1, "mem": 32}})
    run = scheduler.call("POST", "/v1/jobs/ui.pages/runs")
    task = scheduler.wait_until(lambda: scheduler.call("GET", "/v2/apps/ui/pages")["app"]["tasks"],
                                lambda tasks: tasks and tasks[0]["state"] == "TASK_RUNNING", "the app running")[0]
    agent_id = task["slaveId"]
    pages = {"/ui/": "Overview", "/ui/apps": "Apps", "/ui/apps/ui/pages": "/ui/pages", f"/ui/tasks/{task['id']}": task["id"],
             "/ui/jobs": "Jobs", "/ui/jobs/ui.pages": "ui.pages", "/ui/new/app": "New app", "/ui/new/job": "New job",
             "/ui/deployments": "Deployments", "/ui/agents": "Agents", f"/ui/agents/{agent_id}": task["host"]}
    for path, heading in pages.items():
        admin.open(path)
        admin.wait_text("h1", heading)
        admin.until(lambda: admin.text("#live-state") in ("live", "offline"), "the page's scripts running")
        assert admin.console_errors() == [], path
    # the overview shows the agents' bars, this framework and the app and job
    admin.open("/ui/")
    admin.until(lambda: len(admin.find_all(".agent-card meter")) == 6, "CPU, memory and disk bars of 2 agents")
    admin.wait_text("#overview-live", "this scheduler")
    admin.wait_text("#overview-live", "ui.pages")
    scheduler.wait_until(lambda: scheduler.call("GET", f"/v1/jobs/ui.pages/runs/{run['id']}"),
                         lambda r: r["status"] == "SUCCESS", "the run")
    shot = admin.save_screenshot("overview")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # dark and light follow the system's preference
    colors = {}
    for scheme in ("light", "dark"):
        admin.driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                     {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        colors[scheme] = admin.driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert colors == {"light": "rgb(255, 255, 255)", "dark": "rgb(13, 17, 23)"}, colors


def test_apps_filter_and_a_waiting_instance_says_why(admin: Browser, scheduler: SchedulerProcess,
                                                     task_python: str) -> None:
    scheduler.call("POST", "/v2/apps", web_app("/ui/front", task_python, labels={"team": "a"}))
    scheduler.call("POST", "/v2/apps", {"id": "/ui/stuck", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                                        "labels": {"team": "b"}, "constraints": [["hostname", "LIKE", "nowhere"]]})
    admin.open("/ui/apps?status=waiting")
    admin.wait_text("#apps-live", "/ui/stuck")
    assert "/ui/front" not in admin.text("#apps-live")
    assert "not placed" in admin.text("tr[data-app='/ui/stuck']")
    admin.open("/ui/apps?label=team%3D%3Da")
    assert [row.get_attribute("data-app") for row in admin.find_all("#apps-live tbody tr[data-app]")] == ["/ui/front"]
    admin.open("/ui/apps?id=stu")
    assert [row.get_attribute("data-app") for row in admin.find_all("#apps-live tbody tr[data-app]")] == ["/ui/stuck"]
    # the app's page names each agent that refused it, and why; so does the queue
    admin.open("/ui/apps/ui/stuck")
    admin.wait_text("#queue-reason", "UnfulfilledConstraint")
    assert {"agent0", "agent1"} <= set(admin.text("#queue-reason").split())
    admin.open("/ui/deployments")
    admin.wait_text("#deployments-live", "/ui/stuck")
    assert "not placed" in admin.text("#deployments-live")


def test_the_ui_through_a_followers_leader_proxy(open_browser: Any, cluster: Any, zk: Any, tmp_path: Any,
                                                 task_python: str) -> None:
    """A standby scheduler passes the UI on to the leader: pages, the live stream, and forms."""
    flags = ("--zk", zk.url("/ui-ha"))
    with mock.patch.object(scheduler_support, "dockyard", ui_scheduler_argv):
        leader = SchedulerProcess.start(cluster, tmp_path / "leader", *flags)
        follower = SchedulerProcess.start(cluster, tmp_path / "follower", *flags, subscribed=False)
    try:
        leader.wait_until(lambda: leader.health(), lambda h: h.get("role") == "leader", "the first to lead")
        assert follower.health().get("role") == "standby"
        browser = open_browser(cluster.operator, follower.url)
        browser.open("/ui/apps")
        leader.call("POST", "/v2/apps", web_app("/ui/via-follower", task_python))
        browser.wait_text("#apps-live", "/ui/via-follower")  # live, through the proxy's stream
        assert browser.same_page()
        browser.open("/ui/apps/ui/via-follower")
        browser.fill("input[name=instances]", "0")
        browser.click("input[name=force]")  # the first deployment may still be finishing
        browser.click("button[data-action=scale]", confirm=True)
        browser.until(lambda: "done=scaled" in browser.path, "the scale through the follower")
        assert leader.call("GET", "/v2/apps/ui/via-follower")["app"]["instances"] == 0
        assert not browser.console_errors()
        browser.driver.get("about:blank")  # before its schedulers stop under it
        leader.call("DELETE", "/v2/apps/ui/via-follower?force=true")
        leader.wait_until(lambda: not leader.call("GET", "/v2/tasks")["tasks"], bool, "no task left")
    finally:
        follower.stop()
        leader.stop()
