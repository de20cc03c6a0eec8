"""`dockyard job ...`: Metronome jobs through the scheduler's `/v1` API.

`job run FILE` creates or replaces the job and starts a run (`--wait` follows it:
scheduler/cli/runs.py); `job create FILE` and `job update FILE` only store it, for
its schedules or a later `job run`.
"""
from __future__ import annotations

import sys

import click

from framework.tables import table as make_table
from scheduler.cli import build as builds
from scheduler.cli.client import (Api, ServerError, client_options, connect, console, emit, err_console,
                                  force_option, json_option, load_spec, print_warnings)
from scheduler.cli.logs import pump, tails
from scheduler.cli.runs import FINISHED, Unplaceable, follow_run, run_exit_code

GRACE = 15.0  # seconds a run no agent can take may wait before `job run --wait` gives up


@click.group()
def job() -> None:
    """Batch jobs (Metronome API)."""


def _load_job(file: str) -> tuple[dict, list[str]]:
    """The job in FILE and the fields in it that no Metronome job has."""
    from scheduler.jobs.specs import unknown_fields

    spec = load_spec(file, "a job spec")
    return spec, unknown_fields(spec)


@job.command("run")
@click.argument("file")
@click.option("--wait", is_flag=True, help="show the task's states and output; exit with its exit code")
@click.option("--unplaceable-grace", "grace", default=GRACE, show_default=True, type=float, metavar="SECONDS",
              help="with --wait: how long a run that no agent can ever take may wait before the command gives up "
                   "(the run stays queued until its maxLaunchDelay)")
@click.option("--build", "build_dir", default=None, metavar="DIR",
              help="first build DIR's Dockerfile into an image and run the job in it (docs/images.md)")
@click.option("--push", is_flag=True, help="with --build: push the image to the registry its tag names")
@click.option("--tag", default=None, help="with --build: the image's name [default: the job id, :latest]")
@client_options
@json_option
def job_run(file: str, wait: bool, grace: float, build_dir: str | None, push: bool, tag: str | None,
            url: str | None, config: str | None, as_json: bool) -> None:
    """Create or replace the job in FILE (JSON or YAML) and start a run."""
    spec, unknown = _load_job(file)
    if build_dir is not None:
        spec = builds.with_job_image(spec, builds.build(build_dir, tag or builds.image_tag(str(spec["id"])),
                                                        config, push))
    api = connect(url, config)
    api.call("PUT", f"/v1/jobs/{spec['id']}", spec)
    print_warnings(unknown, api)
    run = api.call("POST", f"/v1/jobs/{spec['id']}/runs")
    if not wait:
        if as_json:
            emit(run)
        else:
            console.print(f"started run {run['id']} of job {spec['id']}")
        return
    if not as_json:
        err_console.print(f"run {run['id']} of job {spec['id']} submitted", style="dim")
    try:
        final = follow_run(api, spec["id"], run["id"], as_json, show_states=not as_json, stream_logs=not as_json,
                           grace=grace)
    except Unplaceable as stuck:
        raise click.ClickException(
            f"run {run['id']} of job {spec['id']} cannot be placed: {stuck.reason}\n"
            f"it stays queued, as Metronome keeps it, until its maxLaunchDelay; "
            f"stop it with `dockyard job stop {spec['id']} {run['id']}`") from None
    code = run_exit_code(final)
    if as_json:
        emit(final)
    else:
        style = "green" if final["status"] == "SUCCESS" else "red"
        message = f"run {final['id']} {final['status']}"
        if final.get("reason"):
            message += f": {final['reason']}"
        err_console.print(message, style=style, markup=False)
    sys.exit(code)


@job.command("create")
@click.argument("file")
@client_options
@json_option
def job_create(file: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Create the job in FILE (JSON or YAML) without running it; its schedules start."""
    spec, unknown = _load_job(file)
    api = connect(url, config)
    try:
        created = api.call("POST", "/v1/jobs", spec)
    except ServerError as error:
        if error.status == 409:
            raise click.ClickException(f"job {spec['id']} already exists: `dockyard job update {file}` "
                                       f"replaces it") from None
        raise
    print_warnings(unknown, api)
    _stored(created, "created", as_json)


@job.command("update")
@click.argument("file")
@client_options
@json_option
def job_update(file: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Replace the job in FILE (JSON or YAML) without running it; active runs keep their spec."""
    spec, unknown = _load_job(file)
    api = connect(url, config)
    if not _exists(api, spec["id"]):
        raise click.ClickException(f"no job {spec['id']}: `dockyard job create {file}` creates it")
    updated = api.call("PUT", f"/v1/jobs/{spec['id']}", spec)
    print_warnings(unknown, api)
    _stored(updated, "updated", as_json)


def _exists(api: Api, job_id: str) -> bool:
    try:
        api.call("GET", f"/v1/jobs/{job_id}")
    except ServerError as error:
        if error.status == 404:
            return False
        raise
    return True


def _stored(job_view: dict, done: str, as_json: bool) -> None:
    if as_json:
        emit(job_view)
        return
    schedules = ", ".join(f"{s['id']} {s['cron']} (next {s.get('nextRunAt') or '-'})"
                          for s in job_view.get("schedules") or [] if s.get("enabled", True))
    console.print(f"job {job_view['id']} {done}" + (f"; schedules: {schedules}" if schedules else
                                                      "; no schedule: `dockyard job run FILE` runs it now"),
                  markup=False)


@job.command("list")
@client_options
@json_option
def job_list(url: str | None, config: str | None, as_json: bool) -> None:
    """List jobs with their schedules and run counts."""
    jobs = connect(url, config).call("GET", "/v1/jobs", params={"embed": ["activeRuns", "historySummary"]})
    if as_json:
        emit(jobs)
        return
    table = make_table("ID", "CMD", "SCHEDULES", "ACTIVE", "SUCCESS", "FAILED", "LAST SUCCESS")
    for item in jobs:
        summary = item.get("historySummary", {})
        table.add_row(item["id"], (item["run"].get("cmd") or " ".join(item["run"].get("args") or []))[:40],
                      ", ".join(s["cron"] for s in item.get("schedules", [])) or "-",
                      str(len(item.get("activeRuns", []))), str(summary.get("successCount", 0)),
                      str(summary.get("failureCount", 0)), summary.get("lastSuccessAt") or "-")
    console.print(table)


@job.command("show")
@click.argument("job_id")
@client_options
@json_option
def job_show(job_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Show a job's spec, schedules and active runs."""
    data = connect(url, config).call("GET", f"/v1/jobs/{job_id}", params={"embed": ["activeRuns", "historySummary"]})
    if as_json:
        emit(data)
        return
    run = data["run"]
    console.print(f"[bold]{data['id']}[/bold]  {data.get('description', '')}")
    console.print(f"  cmd: {run.get('cmd') or run.get('args')}")
    console.print(f"  cpus {run['cpus']}  mem {run['mem']}  disk {run['disk']}  instances {run.get('instances', 1)}"
                  f"  restart {run['restart']['policy']}")
    for schedule in data.get("schedules", []):
        console.print(f"  schedule {schedule['id']}: {schedule['cron']} ({schedule['timezone']}), "
                      f"{schedule['concurrencyPolicy']}, {'enabled' if schedule['enabled'] else 'disabled'}, "
                      f"next {schedule.get('nextRunAt', '-')}")
    for dependency in data.get("dependencies", []):
        console.print(f"  after: {dependency['id']}")
    summary = data.get("historySummary", {})
    console.print(f"  runs: {summary.get('successCount', 0)} succeeded, {summary.get('failureCount', 0)} failed;"
                  f" {len(data.get('activeRuns', []))} active")


@job.command("history")
@click.argument("job_id")
@client_options
@json_option
def job_history(job_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Success and failure counts and the kept finished runs."""
    data = connect(url, config).call("GET", f"/v1/jobs/{job_id}", params={"embed": "history"})["history"]
    if as_json:
        emit(data)
        return
    console.print(f"successes {data['successCount']} (last {data.get('lastSuccessAt') or '-'}), "
                  f"failures {data['failureCount']} (last {data.get('lastFailureAt') or '-'})")
    table = make_table("RUN", "RESULT", "CREATED", "FINISHED")
    rows = [(r, "SUCCESS") for r in data.get("successfulFinishedRuns", [])] + \
           [(r, "FAILED") for r in data.get("failedFinishedRuns", [])]
    for item, result in sorted(rows, key=lambda x: x[0]["finishedAt"] or "", reverse=True):
        table.add_row(item["id"], result, item["createdAt"], item["finishedAt"])
    console.print(table)


@job.command("runs")
@click.argument("job_id")
@client_options
@json_option
def job_runs(job_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Active and kept runs of a job."""
    runs = connect(url, config).call("GET", f"/v1/jobs/{job_id}/runs", params={"all": "true"})
    if as_json:
        emit(runs)
        return
    table = make_table("RUN", "STATUS", "CREATED", "COMPLETED", "TASKS", "EXIT", "NOTE")
    for run in sorted(runs, key=lambda r: r["createdAt"], reverse=True):
        exits = ",".join(str(t["exitCode"]) for t in run["tasks"] if t.get("exitCode") is not None)
        table.add_row(run["id"], run["status"], run["createdAt"], run.get("completedAt") or "-",
                      str(len(run["tasks"])), exits or "-", run.get("reason") or run.get("waiting") or "")
    console.print(table)


@job.command("stop")
@click.argument("job_id")
@click.argument("run_id")
@client_options
@json_option
def job_stop(job_id: str, run_id: str, url: str | None, config: str | None, as_json: bool) -> None:
    """Stop a run: its tasks are killed."""
    run = connect(url, config).call("POST", f"/v1/jobs/{job_id}/runs/{run_id}/actions/stop")
    emit(run) if as_json else console.print(f"run {run_id}: {run['status']}")


@job.command("delete")
@click.argument("job_id")
@force_option("stop its active runs too (else a job with active runs is not deleted)")
@client_options
def job_delete(job_id: str, force: bool, url: str | None, config: str | None) -> None:
    """Delete a job."""
    api = connect(url, config)
    try:
        api.call("DELETE", f"/v1/jobs/{job_id}", params={"stopCurrentJobRuns": str(force).lower()})
    except ServerError as error:
        if error.status == 409 and "active run" in error.message:  # Metronome names its own query flag
            raise ServerError(409, f"job {job_id} has active runs: `dockyard job delete {job_id} --force` stops "
                                   f"them too, or `dockyard job runs {job_id}` lists them") from None
        raise
    console.print(f"deleted {job_id}", markup=False)


@job.command("logs")
@click.argument("ids", nargs=-1, required=True)
@click.option("-f", "--follow", is_flag=True, help="keep printing until the run finishes")
@client_options
def job_logs(ids: tuple[str, ...], follow: bool, url: str | None, config: str | None) -> None:
    """Print a run's stdout and stderr: `job logs RUN` or `job logs JOB RUN`."""
    api = connect(url, config)
    if len(ids) == 1:
        run = api.call("GET", f"/v1/runs/{ids[0]}")
    elif len(ids) == 2:
        run = api.call("GET", f"/v1/jobs/{ids[0]}/runs/{ids[1]}")
    else:
        raise click.UsageError("give RUN or JOB RUN")
    if follow and run["status"] not in FINISHED:
        follow_run(api, run["jobId"], run["id"], as_json=False, show_states=False)
        return
    with api.files_client() as files:
        found: dict[str, list] = {}
        for task in run.get("tasks", []):
            if not task.get("sandbox"):
                err_console.print(f"{task['id']}: no sandbox yet ({task['status']})", style="yellow")
                continue
            pump(tails(files, task, found, api.settings))
