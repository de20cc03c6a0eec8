"""How the agent starts a process inside a running task's container: the argv, and its own cgroup.

dockyard's executor runs each task in a container of its own and writes a record of it,
`<work_dir>/containers/<id>/state.json` (executor/containers/records.py): the task's cgroups,
and for a task with an image its OCI runtime and init pid; for a host task its user and
whether it has a PID namespace. From that record the agent runs a nested process where the
task runs, as Mesos's DEBUG containers share their parent's namespaces and cgroups
(src/slave/containerizer/mesos/containerizer.cpp):

- a task with an image: `runc exec` (or crun's) into the container's id, which enters its
  mount, PID, network, UTS and IPC namespaces and root file system, applies its user,
  capabilities, seccomp profile and environment, and joins its cgroups; without a terminal
  it runs detached, the process writing straight into the agent's pipes, under a reaper
  that gives its exit status (framework/local/agent/nested_reaper.py);
- a host task: its cgroups joined by a shell's `echo 0 > cgroup.procs` (counting against the
  task's limits from the first instruction), then `nsenter` into its PID and mount
  namespaces when it has them, `setsid` (and the terminal as controlling one), `setpriv` to
  the task's user, with the environment the task started with, less what would make those
  helpers, which run as root, load code or files of the task's choosing.

Either way the nested process gets a cgroup of its own *below* the task's (in the hierarchy
that counts processes): what it forks, even a daemon that leaves its process tree, is found
there and killed when the session ends, and its memory still counts against the task's
limit. The runtime's state lives under `<work_dir>/runtime/<name>`, as
executor/containers/runtime.py keeps it.
"""
from __future__ import annotations

import pwd
import shlex
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from framework import cgroups
from framework.errors import ContainerError, DockyardError
from framework.local.agent import checkpoint

RUNTIMES = ("runc", "crun")
SH = "/bin/sh"
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"
SETSID = shutil.which("setsid") or "/usr/bin/setsid"
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
NESTED_PREFIX = "nested-"
INITS = ("dockyard-init", "tini", "tini-static")  # a host task's namespace init (executor/containers/hostinit.py)
START_WAIT = 5.0


class EntryError(ContainerError):
    """The task's container cannot be entered; the message says why (a 400 for the caller)."""


@dataclass
class Entry:
    """What to run, and the cgroup that holds whatever it becomes."""

    argv: list[str]
    env: dict[str, str] | None  # None: the runtime takes the container's own
    cwd: str | None
    runtime: bool  # an OCI runtime's `exec`: it exits 128+N when signal N killed the process
    group: cgroups.Cgroup | None  # the nested process's own cgroup (made by `make_group`)
    pid_file: Path | None = None  # where the runtime writes the pid of the process it started
    cleanup: list[Path] = field(default_factory=list)  # files to remove with the cgroup
    detached: bool = False  # the runtime exits once the process runs: a reaper is its parent (nested_reaper.py)

    def saved(self) -> dict:
        """What an agent restarted meanwhile needs of it to end it: its cgroup and files."""
        return {"group": self.group.paths if self.group is not None else None, "runtime": self.runtime,
                "cleanup": [str(path) for path in self.cleanup]}

    @classmethod
    def restored(cls, saved: dict) -> "Entry":
        """An entry as `saved` kept it: enough to kill what it became and remove its cgroup."""
        paths = saved.get("group")
        group = cgroups.Cgroup({str(k): str(v) for k, v in paths.items()}) if isinstance(paths, dict) else None
        return cls([], None, None, bool(saved.get("runtime")), group,
                   cleanup=[Path(str(path)) for path in saved.get("cleanup") or []])

    def make_group(self) -> None:
        if self.group is not None:
            for directory in self.group.dirs():
                directory.mkdir(exist_ok=True)

    def kill_group(self) -> None:
        """Kill everything in the nested container's cgroup and below: on cgroup v2 at once through
        `cgroup.kill` (Linux 5.14+), which also takes what is forking meanwhile; else one by one."""
        if self.group is None:
            return
        if self.group.layout.version == 2:
            try:
                (self.group.dir("") / "cgroup.kill").write_text("1")
                return
            except OSError:
                pass  # an older kernel (no such file), or the cgroup is gone already
        self.group.kill()


def read_record(work_dir: Path, value: str) -> dict | None:
    """The executor's record of container `value` (a validated ContainerID value: no `/`, no `.`)."""
    record = checkpoint.read_json(work_dir / "containers" / value / "state.json")
    return record if isinstance(record, dict) and record.get("id") == value else None


def command_argv(command: dict) -> list[str]:
    """argv of a CommandInfo: `sh -c value` (shell, the default), else `value` with `arguments[1:]`."""
    value = command.get("value") or ""
    if command.get("shell", True):
        if not value:
            raise EntryError("the command's 'value' is empty")
        return [SH, "-c", value]
    arguments = [str(a) for a in command.get("arguments") or []]
    program = value or (arguments[0] if arguments else "")
    if not program:
        raise EntryError("the command names no program ('value' and 'arguments' are empty)")
    return [program, *arguments[1:]]


def command_environment(command: dict) -> dict[str, str]:
    """The VALUE variables of a CommandInfo's environment (what the session adds to its parent's)."""
    variables = (command.get("environment") or {}).get("variables") or []
    return {str(v["name"]): str(v.get("value", "")) for v in variables
            if isinstance(v, dict) and v.get("name") and v.get("type", "VALUE") == "VALUE"}


def entry(record: dict, work_dir: Path, command: dict, *, tty: bool, user: str | None = None) -> Entry:
    """How to run `command` in the container `record` describes (EntryError when it cannot be)."""
    argv = command_argv(command)
    extra_env = command_environment(command)
    name = f"{NESTED_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        layout = cgroups.detect()
    except DockyardError as error:
        raise EntryError(f"no usable cgroups on this agent: {error}") from None
    if record.get("kind") == "host":
        return _host_entry(record, layout, argv, extra_env, name, tty=tty, user=user)
    if user:
        raise EntryError("a nested container in a container with an image runs as the container's user; "
                         "'command.user' is not supported there")
    return _runtime_entry(record, work_dir, layout, argv, extra_env, name, tty=tty)


def _tracking(layout: cgroups.Layout, paths: dict[str, str]) -> str:
    """The hierarchy whose membership says which processes a nested container has: `pids` (v1,
    which `Cgroup.procs` reads too), the unified one (v2)."""
    if layout.version == 2:
        return ""
    for controller in ("pids", "memory", *paths):
        if controller in paths and controller in layout.mounts:
            return controller
    raise EntryError("the task's cgroups are not on this agent's hierarchies")


def _runtime_entry(record: dict, work_dir: Path, layout: cgroups.Layout, argv: list[str],
                   extra_env: dict[str, str], name: str, *, tty: bool) -> Entry:
    runtime = record.get("runtime")
    if runtime not in RUNTIMES:
        raise EntryError(f"the container's OCI runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")
    binary = shutil.which(runtime)
    if binary is None:
        raise EntryError(f"the OCI runtime {runtime} is not installed on this agent")
    if record.get("state") != "running":
        raise EntryError(f"the task's container is {record.get('state') or 'not started'}, not running")
    paths = (record.get("cgroup") or {}).get("paths") or {}
    controller = _tracking(layout, paths)
    init = int(record.get("pid") or 0)
    try:
        init_path = cgroups.own_cgroup(controller, init) if init > 0 else ""
    except OSError:
        init_path = ""
    task_path = paths.get(controller, "")
    if not init_path or not task_path or not (init_path + "/").startswith(task_path.rstrip("/") + "/"):
        raise EntryError("the task's container is not running (its init is gone)")
    group = cgroups.Cgroup({controller: f"{init_path.rstrip('/')}/{name}"}, layout)
    pid_file = work_dir / "nested" / f"{name}.pid"
    command = [binary, "--root", str(work_dir / "runtime" / runtime), "exec", "--pid-file", str(pid_file)]
    # Without a terminal the runtime hands the process our pipes and exits (`--detach`), where in
    # the foreground it would copy the process's output through pipes of its own.
    command.append("--tty" if tty else "--detach")
    if runtime == "runc" or layout.version == 2:  # crun takes one sub-cgroup for every v1 hierarchy
        command += ["--cgroup", f"{controller}:{name}" if layout.version == 1 else name]
    else:
        group = None
    for variable, value in extra_env.items():
        command += ["--env", f"{variable}={value}"]
    return Entry([*command, str(record["id"]), *argv], None, None, True, group, pid_file, [pid_file],
                 detached=not tty)


def _host_entry(record: dict, layout: cgroups.Layout, argv: list[str], extra_env: dict[str, str], name: str,
                *, tty: bool, user: str | None) -> Entry:
    paths = (record.get("cgroup") or {}).get("paths") or {}
    controller = _tracking(layout, paths)
    task_group = cgroups.Cgroup(paths, layout)
    own = task_group.dir(controller)
    leader = _leader(own / "cgroup.procs", bool(record.get("pid_namespace")))
    try:
        env = _environ(leader)
    except OSError:
        raise EntryError("the task's process ended while the session started") from None
    env.update(extra_env)
    # The helpers below run as root with this environment, which the task's memory (and the
    # caller) chose: without what the dynamic linker and libc would load code or files from.
    env = {name: value for name, value in env.items() if not _unsafe(name)}
    run_as = user or record.get("user")
    if run_as:
        try:
            account = pwd.getpwnam(run_as)
        except KeyError:
            raise EntryError(f"user '{run_as}' does not exist on this agent") from None
        if account.pw_uid != 0:
            argv = [SETPRIV, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups", "--", *argv]
    sandbox = str(record.get("sandbox") or "/")
    group = cgroups.Cgroup({controller: f"{paths[controller].rstrip('/')}/{name}"}, layout)
    joins = [(group.dir(controller) if directory == own else directory) / "cgroup.procs"
             for directory in task_group.dirs()]
    join = "".join(f"echo 0 >{shlex.quote(str(path))} || exit 125; " for path in joins)
    chain = [SETSID, *(["--ctty"] if tty else []), *argv]
    if record.get("pid_namespace"):
        chain = [NSENTER, f"--target={leader}", "--pid", "--mount", f"--wd={sandbox}", "--", *chain]
    return Entry([SH, "-c", join + 'exec "$@"', "dockyard-nested", *chain], env, sandbox, False, group)


def _leader(procs: Path, namespace: bool, timeout: float = START_WAIT) -> int:
    """The task's first process, or the init of its PID namespace: where the environment and the
    namespaces come from. A task reported running may still be joining its cgroup and starting
    its init (executor/containers/hostiso.py): that is waited for, a little."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            members = [int(p) for p in procs.read_text().split()]
        except (OSError, ValueError):
            members = []
        found = [p for p in members if _is_init(p)] if namespace else members
        if found:
            return min(found)
        if time.monotonic() > deadline:
            if namespace:
                raise EntryError("the task's PID namespace has no init (the task is starting or ending)")
            raise EntryError("the task has no process left to join")
        time.sleep(0.005)


def _is_init(pid: int) -> bool:
    """Whether `pid` is the init of the task's PID namespace: root's init program, pid 1 one level below
    ours. A task can make namespaces of its own (a user namespace, then a PID and a mount one),
    where its process is pid 1 too, two levels down: entering those as root would run the
    session's helpers in a file system the task arranged."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)
        with open(f"/proc/{pid}/comm") as handle:
            name = handle.read().strip()
    except (OSError, ValueError):
        return False
    return (name in INITS and fields.get("NSpid", "").split()[1:] == ["1"]
            and fields.get("Uid", "").split()[:1] == ["0"])


# glibc's UNSECURE_ENVVARS (elf/unsecvars.h): what it ignores for a set-user-ID program.
UNSAFE = frozenset({"GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH",
                    "MALLOC_TRACE", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR"})


def _unsafe(name: str) -> bool:
    return name.startswith("LD_") or name in UNSAFE


def _environ(pid: int) -> dict[str, str]:
    """The environment process `pid` started with: the task's (as a DEBUG container copies its parent's)."""
    with open(f"/proc/{pid}/environ", "rb") as handle:
        raw = handle.read()
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env
