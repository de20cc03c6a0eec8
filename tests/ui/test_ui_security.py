"""The UI against hostile input and hostile pages: markup and script in everything users can
write shows as text and never runs; a form posted from another origin is refused; every page
carries the Content-Security-Policy and has no inline script."""
from __future__ import annotations

import re
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from tests.support.scheduler import SchedulerProcess
from tests.ui.browser import Browser
from tests.ui.test_ui_browser import web_app

SCRIPT = "<script>window.__xss = 1</script>"
IMAGE = "\"'><img src=x onerror=\"window.__xss = 2\">"
LINK = "javascript:window.__xss = 3"
HOSTILE = SCRIPT + IMAGE

# What a page must not contain once rendered: script we did not ship, handlers, odd links.
DOM_CHECK = """
const found = [];
for (const element of document.querySelectorAll('*')) {
  for (const attribute of element.attributes) {
    if (attribute.name.toLowerCase().startsWith('on')) found.push('handler ' + element.tagName + ' ' + attribute.name);
  }
}
for (const script of document.querySelectorAll('script')) {
  const src = script.getAttribute('src') || '';
  if (!src.startsWith('/ui/static/')) found.push('script ' + (src || script.textContent.slice(0, 80)));
}
for (const link of document.querySelectorAll('[href], [action], [formaction], [src]')) {
  for (const name of ['href', 'action', 'formaction', 'src']) {
    const value = (link.getAttribute(name) || '').trim().toLowerCase();
    if (value.startsWith('javascript:') || value.startsWith('data:text/html')) found.push(name + ' ' + value);
  }
}
if (document.querySelectorAll('img, iframe, object, embed').length) found.push('embedded content');
if (window.__xss !== undefined) found.push('ran: ' + window.__xss);
return found;
"""


def assert_inert(browser: Browser, shows: tuple[str, ...] = ()) -> None:
    """Nothing hostile took effect on this page, and what was given shows as text."""
    problems = browser.driver.execute_script(DOM_CHECK)
    assert problems == [], (browser.path, problems)
    text = browser.text()
    for expected in shows:
        assert expected in text, (browser.path, expected)


def test_markup_and_script_everywhere_show_as_text(admin: Browser, scheduler: SchedulerProcess,
                                                   task_python: str) -> None:
    printed = f"echo {shlex.quote(HOSTILE)}; echo {shlex.quote(LINK)} >&2; "
    app = web_app("/ui/hostile", task_python, labels={HOSTILE: LINK, "link": LINK}, env={"EVIL": HOSTILE})
    app["cmd"] = printed + app["cmd"]
    scheduler.call("POST", "/v2/apps", app)
    scheduler.call("POST", "/v1/jobs", {"id": "ui.hostile", "description": HOSTILE, "labels": {"link": LINK},
                                        "run": {"cmd": printed + "true", "cpus": 0.1, "mem": 32, "env": {"E": HOSTILE}}})
    run = scheduler.call("POST", "/v1/jobs/ui.hostile/runs")
    scheduler.wait_until(lambda: scheduler.call("GET", f"/v1/jobs/ui.hostile/runs/{run['id']}"),
                         lambda r: r["status"] == "SUCCESS", "the hostile job's run")
    task = scheduler.wait_until(lambda: scheduler.call("GET", "/v2/apps/ui/hostile")["app"]["tasks"],
                                lambda tasks: tasks and tasks[0]["state"] == "TASK_RUNNING", "the hostile app running")[0]

    admin.open("/ui/apps")
    assert_inert(admin, (HOSTILE, LINK))
    admin.open("/ui/apps/ui/hostile")
    assert_inert(admin, (LINK,))
    assert HOSTILE.replace('"', '\\"') in admin.text("#definition")  # JSON-quoted, as text
    admin.open(f"/ui/tasks/{task['id']}")
    admin.wait_text("#log-stdout", HOSTILE)
    admin.wait_text("#log-stderr", LINK)
    assert_inert(admin)
    admin.open("/ui/jobs")
    assert_inert(admin, (LINK,))
    admin.open("/ui/jobs/ui.hostile")
    assert_inert(admin, (HOSTILE, LINK))
    admin.find("#job-live .runs a").click()
    admin.wait_text("#log-stdout", HOSTILE)
    assert_inert(admin)
    for page in ("/ui/", "/ui/deployments", "/ui/agents"):
        admin.open(page)
        assert_inert(admin)

    # a 422 that quotes what was typed
    admin.open("/ui/new/app")
    admin.fill("#field-id", HOSTILE)
    admin.fill("#field-cmd", HOSTILE)
    admin.set_value("#field-definition", '{"labels": {"%s": "x"}}' % LINK)
    admin.click("#deploy")
    admin.until(lambda: admin.find_all(".field[data-field=id] .field-error"), "the id's error")
    assert_inert(admin)
    assert admin.find("#field-cmd").get_attribute("value") == HOSTILE


@pytest.fixture
def other_origin() -> Iterator[dict[str, Any]]:
    """Another web server on this machine (same site, another origin), serving one page:
    `page["html"]`, set by the test."""
    page: dict[str, Any] = {"html": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = page["html"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    page["url"] = f"http://127.0.0.1:{server.server_address[1]}/"
    yield page
    server.shutdown()
    server.server_close()


def test_a_form_posted_from_another_origin_is_refused(admin: Browser, scheduler: SchedulerProcess,
                                                      other_origin: dict[str, Any], cluster: Any,
                                                      task_python: str) -> None:
    scheduler.call("POST", "/v2/apps", web_app("/ui/victim", task_python))
    admin.open("/ui/apps/ui/victim")
    token = admin.find("input[name=csrf]").get_attribute("value")  # even with the admin's own token
    other_origin["html"] = (f'<form method="post" action="{scheduler.url}/ui/apps/ui/victim">'
                            f'<input type="hidden" name="csrf" value="{token}">'
                            '<input type="hidden" name="action" value="delete">'
                            '<input type="hidden" name="force" value="true">'
                            '<button id="go" type="submit">win a prize</button></form>')
    admin.driver.get(other_origin["url"])
    admin.click("#go")
    admin.until(lambda: admin.path.startswith("/ui/apps/ui/victim"), "the post's answer")
    assert "Refused" in admin.text("h1"), admin.text()
    assert "another site" in admin.text(".error")
    assert scheduler.status("GET", "/v2/apps/ui/victim")[0] == 200

    # a client that says nothing of where it comes from needs the token; one that names
    # another origin is refused with it; the UI's own origin passes
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    signed = f"csrf={token}&action=delete&force=true"
    with scheduler.as_(cluster.operator).client(follow_redirects=False) as client:
        assert client.post("/ui/apps/ui/victim", content="action=delete&force=true", headers=form).status_code == 400
        assert client.post("/ui/apps/ui/victim", content=signed,
                           headers={**form, "Origin": "http://evil.example"}).status_code == 403
        assert scheduler.status("GET", "/v2/apps/ui/victim")[0] == 200
        answer = client.post("/ui/apps/ui/victim", content=signed,
                             headers={**form, "Origin": scheduler.url, "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/apps?done=deleted"), answer


PAGES = ("/ui/", "/ui/apps", "/ui/apps/ui/secured", "/ui/jobs", "/ui/jobs/ui.secured", "/ui/deployments",
         "/ui/agents", "/ui/new/app", "/ui/new/job")


def test_every_page_has_the_policy_and_no_inline_script(scheduler: SchedulerProcess, cluster: Any,
                                                        task_python: str) -> None:
    scheduler.call("POST", "/v2/apps", web_app("/ui/secured", task_python))
    scheduler.call("POST", "/v1/jobs", {"id": "ui.secured", "run": {"cmd": "true", "cpus": 0.1, "mem": 32}})
    as_admin = scheduler.as_(cluster.operator)
    for path in PAGES:
        status, headers, raw = as_admin.call("GET", path)
        assert status == 200, (path, status, raw[:300])
        policy = headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
        assert headers["x-content-type-options"] == "nosniff"
        html = raw.decode()
        assert not re.findall(r"<script(?![^>]*\bsrc=)", html), path
        assert not re.findall(r"\sstyle=|\son[a-z]+=", html), path
    # a sandbox path leads nowhere but below the task's sandbox
    task = scheduler.wait_until(lambda: scheduler.call("GET", "/v2/apps/ui/secured")["app"]["tasks"],
                                lambda tasks: tasks and tasks[0]["state"] == "TASK_RUNNING", "the app running")[0]
    for path in ("../../../../../etc/passwd", "www/../../x", "/etc/passwd"):
        status, _, raw = as_admin.call("GET", f"/ui/tasks/{task['id']}/download?path={path}")
        assert status in (400, 404), (path, status, raw[:200])
        assert b"root:" not in raw
    # without credentials: the API's 401 and its Basic challenge, for the browser's prompt
    status, headers, _ = scheduler.as_(None).call("GET", "/ui/apps")
    assert status == 401 and headers["www-authenticate"].startswith("Basic realm=")
    # `/` sends a browser to the UI, and gives an API client the API's 404
    with scheduler.as_(cluster.operator).client(follow_redirects=False) as client:
        answer = client.get("/", headers={"Accept": "text/html"})
        assert answer.status_code == 302 and answer.headers["location"] == "/ui/"
        assert client.get("/", headers={"Accept": "application/json"}).status_code == 404
