"""The UI's buttons and forms (POST): checked to come from our own pages, then made as the
API calls they stand for (scheduler/ui/calls.py), answered with the page they concern.

Success redirects (303) to the page to watch, naming what was done (`?done=`);
a refusal or a failure shows the page again with the API's message, and the form
with each 422 detail next to its field.
"""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from scheduler.ui import forms, pages
from scheduler.ui.calls import Answer, call_api
from scheduler.ui.guard import refusal
from scheduler.ui.render import app_href, job_href, query

FORM_TYPE = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> dict[str, str]:
    """The posted form (URL-encoded only: the UI uploads no files); the last value of a repeated name."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        return {}
    raw = await request.body()
    return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))


async def accepted(request: Request, ctx: Any) -> tuple[dict[str, str], Response | None]:
    """The form, or the page refusing it when it did not come from one of our pages."""
    form = await read_form(request)
    refused = refusal(request, ctx, form)
    if refused is not None:
        return form, pages.message(request, ctx, refused[0], "Refused", refused[1])
    return form, None


def _done(url: str, done: str, answer: Answer | None = None) -> Response:
    deployment = answer.headers.get("marathon-deployment-id", "") if answer is not None else ""
    return RedirectResponse(query(url, done=done, deployment=deployment), status_code=303)


def _failure(answer: Answer) -> str:
    text = answer.message
    locked = answer.body.get("deployments") if isinstance(answer.body, dict) else None
    if answer.status == 409 and locked:
        text += " (tick 'force' to replace the deployment in progress)"
    return text


# -- an app -----------------------------------------------------------------------------------------

async def app_action(request: Request, ctx: Any) -> Response:
    form, refused = await accepted(request, ctx)
    if refused is not None:
        return refused
    app_id = "/" + request.path_params["app_id"].strip("/")
    path = "/v2/apps" + quote(app_id, safe="/")
    params = {"force": "true"} if form.get("force") else None
    action = form.get("action", "")
    calls: dict[str, Callable[[], Any]] = {
        "scale": lambda: call_api(request, "PUT", path, body={"instances": forms.as_number(form.get("instances", "").strip())},
                                  params=params),
        "suspend": lambda: call_api(request, "PUT", path, body={"instances": 0}, params=params),
        "restart": lambda: call_api(request, "POST", path + "/restart", params=params),
        "rollback": lambda: call_api(request, "PUT", path, body={"version": form.get("version", "")}, params=params),
        "delete": lambda: call_api(request, "DELETE", path, params=params),
    }
    if action not in calls:
        return pages.message(request, ctx, 400, "Unknown action", f"No app action '{action}'")
    answer = await calls[action]()
    if not answer.ok:
        return await pages.app(request, ctx, error=_failure(answer), details=answer.details, status=answer.status)
    if action == "delete":
        return _done("/ui/apps", "deleted", answer)
    done = {"scale": "scaled", "suspend": "suspended", "restart": "restarted", "rollback": "rolled-back"}[action]
    return _done(app_href(app_id), done, answer)


# -- new app ----------------------------------------------------------------------------------------

async def _app_form(request: Request, ctx: Any) -> tuple[dict[str, Any], Response | None]:
    """The app the form describes, or the answer already given (a refusal, broken JSON)."""
    form, refused = await accepted(request, ctx)
    if refused is not None:
        return {}, refused
    try:
        return forms.app_document(form), None
    except forms.FormError as error:
        return {}, _broken_json(request, ctx, "app_new.html", form, forms.APP_FIELDS, error)


def _broken_json(request: Request, ctx: Any, template: str, form: dict[str, str],
                 fields: dict[str, tuple[str, ...]], error: forms.FormError) -> Response:
    """The form again, as typed, saying next to its JSON what is wrong with it (400)."""
    values = forms.form_values({}, {k: form.get(k, "") for k in fields})
    values.update(json_text=form.get(forms.JSON_FIELD, ""), field_errors={forms.JSON_FIELD: [str(error)]})
    return pages.show(request, ctx, "apps" if template == "app_new.html" else "jobs", template, values, status=400)


def _answered_form(request: Request, ctx: Any, template: str, values: dict[str, Any], answer: Answer,
                   fields: dict[str, tuple[str, ...]]) -> Response:
    by_field, rest = forms.place_errors(answer.details, fields)
    values.update(field_errors=by_field, other_errors=rest, form_message=answer.message)
    return pages.show(request, ctx, "apps" if template == "app_new.html" else "jobs", template, values,
                      status=answer.status)


async def create_app(request: Request, ctx: Any) -> Response:
    document, answered = await _app_form(request, ctx)
    if answered is not None:
        return answered
    answer = await call_api(request, "POST", "/v2/apps", body=document)
    if answer.ok:
        return _done(app_href(str(answer.body.get("id") or document.get("id", ""))), "created", answer)
    return _answered_form(request, ctx, "app_new.html", forms.app_form_values(document), answer, forms.APP_FIELDS)


async def preview_app(request: Request, ctx: Any) -> Response:
    """The dry run: where each instance would go now, and why not (`POST /dockyard/v1/plan`)."""
    document, answered = await _app_form(request, ctx)
    if answered is not None:
        return answered
    answer = await call_api(request, "POST", "/dockyard/v1/plan", body=document)
    values = forms.app_form_values(document)
    if not answer.ok:
        return _answered_form(request, ctx, "app_new.html", values, answer, forms.APP_FIELDS)
    values["preview"] = answer.body
    return pages.show(request, ctx, "apps", "app_new.html", values)


# -- jobs -------------------------------------------------------------------------------------------

async def create_job(request: Request, ctx: Any) -> Response:
    form, refused = await accepted(request, ctx)
    if refused is not None:
        return refused
    try:
        document = forms.job_document(form)
    except forms.FormError as error:
        return _broken_json(request, ctx, "job_new.html", form, forms.JOB_FIELDS, error)
    answer = await call_api(request, "POST", "/v1/jobs", body=document)
    if answer.ok:
        return _done(job_href(str(answer.body.get("id") or document.get("id", ""))), "job-created")
    return _answered_form(request, ctx, "job_new.html", forms.job_form_values(document), answer, forms.JOB_FIELDS)


async def job_action(request: Request, ctx: Any) -> Response:
    form, refused = await accepted(request, ctx)
    if refused is not None:
        return refused
    job_id = request.path_params["job_id"]
    path = "/v1/jobs/" + quote(job_id, safe="")
    action = form.get("action", "")
    if action == "run":
        answer = await call_api(request, "POST", path + "/runs")
        done = "run-started"
    elif action == "stop":
        answer = await call_api(request, "POST", f"{path}/runs/{quote(form.get('run', ''), safe='')}/actions/stop")
        done = "run-stopped"
    elif action == "delete":
        answer = await call_api(request, "DELETE", path, params={"stopCurrentJobRuns": "true"})
        if answer.ok:
            return _done("/ui/jobs", "job-deleted")
        done = ""
    else:
        return pages.message(request, ctx, 400, "Unknown action", f"No job action '{action}'")
    if not answer.ok:
        return await pages.job(request, ctx, error=_failure(answer), status=answer.status)
    return _done(job_href(job_id), done)


# -- deployments ------------------------------------------------------------------------------------

async def deployment_action(request: Request, ctx: Any) -> Response:
    """Roll a deployment back (its app returns to what it was), or stop it where it is (force)."""
    form, refused = await accepted(request, ctx)
    if refused is not None:
        return refused
    action = form.get("action", "")
    if action not in ("rollback", "stop"):
        return pages.message(request, ctx, 400, "Unknown action", f"No deployment action '{action}'")
    path = "/v2/deployments/" + quote(request.path_params["deployment_id"], safe="")
    answer = await call_api(request, "DELETE", path, params={"force": "true"} if action == "stop" else None)
    if not answer.ok:
        return await pages.deployments(request, ctx, error=_failure(answer), status=answer.status)
    return _done("/ui/deployments", "deployment-rolled-back" if action == "rollback" else "deployment-stopped",
                 answer)
