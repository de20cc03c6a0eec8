"""The new-app and new-job forms: a JSON definition plus a few common fields, and the API's
422 answers put next to the field they name.

The JSON is the definition; a field filled in below it replaces that part of it (the
form shows both agreeing again after every answer). Values are passed on as typed:
`instances` "three" goes to the API as the string it is, and the API's own validation
answers, so the form never judges a definition differently from `POST /v2/apps`.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from framework.errors import DockyardError

APP_FIELDS: dict[str, tuple[str, ...]] = {  # input -> the JSON paths whose errors it shows
    "id": ("/id",), "cmd": ("/cmd", "/args"), "instances": ("/instances",), "cpus": ("/cpus",), "mem": ("/mem",),
}
JOB_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("/id",), "cmd": ("/run/cmd", "/run/args", "/run"), "cpus": ("/run/cpus",), "mem": ("/run/mem",),
    "cron": ("/schedules/0/cron", "/schedules(0)/cron", "/schedules/0", "/schedules(0)", "/schedules"),
}
APP_DEFAULTS = {"id": "", "cmd": "", "instances": 1, "cpus": 0.1, "mem": 64}
JOB_DEFAULTS = {"id": "", "run": {"cmd": "", "cpus": 0.1, "mem": 64}}
JSON_FIELD = "definition"


class FormError(DockyardError, ValueError):
    """The form's JSON is not a JSON object: said next to the JSON field."""


def as_number(text: str) -> Any:
    """The number typed (an int when written as one), else the text as typed."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text  # the API says what is wrong with it


def _document(form: Mapping[str, str]) -> dict[str, Any]:
    raw = form.get(JSON_FIELD, "").strip()
    if not raw:
        return {}
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise FormError(f"not JSON: {error}") from None
    if not isinstance(document, dict):
        raise FormError("the definition is a JSON object: {...}")
    return document


def app_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The app the form describes: its JSON with the filled-in fields put in."""
    document = _document(form)
    for name in ("id", "cmd", "instances", "cpus", "mem"):
        value = form.get(name, "")
        if value.strip():
            document[name] = value if name == "cmd" else value.strip() if name == "id" else as_number(value.strip())
    return document


def job_document(form: Mapping[str, str]) -> dict[str, Any]:
    """The job the form describes (`cron` adds or replaces the first schedule)."""
    document = _document(form)
    run = document.get("run")
    if not isinstance(run, dict):
        run = document["run"] = {} if run is None else run
    if form.get("id", "").strip():
        document["id"] = form["id"].strip()
    if isinstance(run, dict):
        if form.get("cmd", "").strip():
            run["cmd"] = form["cmd"]
        for name in ("cpus", "mem"):
            if form.get(name, "").strip():
                run[name] = as_number(form[name].strip())
    cron = form.get("cron", "").strip()
    if cron:
        schedules = document.get("schedules")
        first = schedules[0] if isinstance(schedules, list) and schedules and isinstance(schedules[0], dict) else {}
        rest = schedules[1:] if isinstance(schedules, list) else []
        document["schedules"] = [{"id": "default", **first, "cron": cron}, *rest]
    return document


def place_errors(details: list[dict], fields: Mapping[str, tuple[str, ...]]) -> tuple[dict[str, list[str]], list[dict]]:
    """The API's `details` split into errors by input and the rest (for the JSON field, with
    their paths)."""
    by_field: dict[str, list[str]] = {}
    rest = []
    for detail in details:
        path = str(detail.get("path", ""))
        errors = [str(e) for e in detail.get("errors") or []] or ["invalid"]
        name = next((n for n, paths in fields.items() if path in paths), None)
        if name is None:
            rest.append({"path": path or "/", "errors": errors})
        else:
            by_field.setdefault(name, []).extend(errors)
    return by_field, rest


def form_values(document: Mapping[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """What a form template shows: the inputs' values, the JSON, no errors yet, no preview."""
    text = json.dumps(document, indent=2, sort_keys=False, default=str)
    return {"fields": {k: "" if v is None else v for k, v in fields.items()}, "json_text": text,
            "field_errors": {}, "other_errors": [], "form_message": "", "preview": None}


def app_form_values(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the form shows for `document`: its fields, and the JSON."""
    return form_values(document, {name: document.get(name, "") for name in APP_FIELDS})


def job_form_values(document: Mapping[str, Any]) -> dict[str, Any]:
    run = document.get("run") if isinstance(document.get("run"), dict) else {}
    schedules = document.get("schedules")
    first = schedules[0] if isinstance(schedules, list) and schedules and isinstance(schedules[0], dict) else {}
    fields = {"id": document.get("id", ""), "cmd": run.get("cmd", ""), "cpus": run.get("cpus", ""),
              "mem": run.get("mem", ""), "cron": first.get("cron", "")}
    return form_values(document, fields)
