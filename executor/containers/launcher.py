"""ContainerLauncher: a task with an image runs in a layered container under runc/crun.

launch():  image (pulled if missing) -> cgroup with limits -> overlay rootfs
           (shared layers + upper dir in the sandbox) -> config.json -> `runtime run`.
destroy(): kill -> wait -> runtime delete -> unmount -> remove cgroup -> remove
           upper dir, bundle and state (records.teardown: one ordered, idempotent
           path, also used by clean-up after a crash, from the persisted state file).
A limit watcher (limits.py) turns an OOM kill or a full disk into a Mesos limitation reason.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal as signals
import subprocess
import threading
import time
from pathlib import Path

from executor.containers import bundle
from executor.containers.gpus import GpuClaim, claim as claim_gpus
from executor.containers.limits import LimitWatcher
from executor.containers.records import new_container_id, teardown
from executor.containers.rootfs import mount_overlay, pin_bind
from executor.containers.runtime import Runtime, last_error
from executor.containers.state import State, check_move, write_json
from executor.launcher import ExitInfo, LaunchSpec, describe_exit
from executor.secrets import SecretMount, has_secrets
from framework import cgroups
from framework.container_policy import ContainerPolicy, is_privileged
from framework.errors import ContainerError, DockyardError
from framework.isolation import Isolators
from framework.mesos.secrets import volume_secrets, without_secret_volumes
from framework.proctree import start_time

log = logging.getLogger(__name__)

DEFAULT_PIDS = 4096
START_TIMEOUT = 60.0


def pids_limit(value: object) -> int:
    """The task's pids limit (ContainerInfo `dockyard.pids_limit`), DEFAULT_PIDS when it sets
    none: a container always has one, so a fork bomb stays inside it."""
    if value is None:
        return DEFAULT_PIDS
    try:
        limit = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ContainerError(f"pids_limit {value!r} is not a number") from None
    if limit < 1:
        raise ContainerError(f"pids_limit must be at least 1 (got {limit}); a container always has a limit")
    return limit


def image_name(container: dict | None) -> tuple[str | None, dict]:
    """(image reference, extra) from a Mesos ContainerInfo (MESOS or DOCKER type)."""
    if not container:
        return None, {}
    image = (container.get("mesos") or {}).get("image") or {}
    docker = image.get("docker") or {}
    if docker.get("name"):
        return docker["name"], {"credential": docker.get("credential"), "cached": image.get("cached", True)}
    if (container.get("docker") or {}).get("image"):
        d = container["docker"]
        return d["image"], {"credential": d.get("credential"), "cached": not d.get("force_pull_image", False)}
    return None, {}


def network_mode(container: dict | None) -> str:
    """"host" (Mesos default) or "none" (own network namespace with loopback only)."""
    container = container or {}
    if str((container.get("docker") or {}).get("network", "")).upper() == "NONE":
        return "none"
    for info in container.get("network_infos") or []:
        if str(info.get("name", "")).lower() == "none":
            return "none"
    if str((container.get("dockyard") or {}).get("network", "")).lower() == "none":
        return "none"
    return "host"


class Container:
    """A running container (the `Running` protocol)."""

    def __init__(self, spec: LaunchSpec, runtime_name: str = "runc") -> None:
        self.spec = spec
        self.work_dir = Path(spec.work_dir)
        self.id = spec.container_id or new_container_id(self.work_dir, spec.task_id)
        self.dir = self.work_dir / "containers" / self.id
        self.bundle = self.dir / "bundle"
        self.rootfs = self.bundle / "rootfs"
        self.upper_root = Path(spec.sandbox) / ".rootfs"
        self.runtime = Runtime(runtime_name, self.work_dir)
        self.init = bundle.find_init()  # PID 1 of the container, the task its child
        self.state = State.NEW
        self.security = bundle.Security()
        self.secrets: SecretMount | None = None  # a tmpfs, when the task has secrets (executor/secrets.py)
        self.config_dir = self.bundle  # where config.json goes: the secrets' tmpfs when it holds them
        self.pid = 0
        self.group: cgroups.Cgroup | None = None
        self.popen: subprocess.Popen | None = None
        self.watcher: LimitWatcher | None = None
        self.image = None
        self.layers: list[str] = []
        self._exit: ExitInfo | None = None
        self.gpu_claim: GpuClaim | None = None  # the agent's GPUs it holds (ContainerLauncher.launch)
        self._lock = threading.RLock()
        self._record: dict = {}

    # -- state --------------------------------------------------------------
    def _move(self, target: State) -> None:
        if check_move(self.state, target):
            self.state = target
            self._save()

    def _save(self) -> None:
        self._record.update({
            "id": self.id, "task_id": self.spec.task_id, "kind": "image", "state": self.state.value,
            "work_dir": str(self.work_dir), "dir": str(self.dir), "runtime": self.runtime.name,
            "upper_root": str(self.upper_root), "sandbox": str(self.spec.sandbox), "layers": self.layers,
            "image": getattr(self.image, "name", None), "image_digest": getattr(self.image, "digest", None),
            "pid": self.pid, "init": str(self.init) if self.init is not None else None,
            "cgroup": ({"paths": self.group.paths, "extra": [str(p) for p in self.group.extra]}
                       if self.group else None),
        })
        if self.state != State.DESTROYED:
            write_json(self.dir / "state.json", self._record)

    # -- start --------------------------------------------------------------
    def start(self, store) -> "Container":
        name, extra = image_name(self.spec.container)
        if not name:
            raise ContainerError("the task's ContainerInfo names no image")
        credential = extra.get("credential") or {}
        from executor.images.registry import Credentials
        creds = Credentials(credential["principal"], credential.get("secret", "")) \
            if credential.get("principal") else None
        if not extra.get("cached", True) and store.resolve(name) is not None:
            store.pull(name, credentials=creds)
        self.security = self._security()
        self.image, layer_dirs = store.prepare(name, credentials=creds)
        self.layers = [d.name for d in layer_dirs]
        try:
            self._prepare(layer_dirs)
            self._run()
        except BaseException as error:
            try:
                self.destroy()
            except DockyardError:
                pass
            if isinstance(error, DockyardError) or not isinstance(error, Exception):
                raise
            raise ContainerError(f"container for {self.spec.task_id} failed to start: {error}") from error
        return self

    def _security(self) -> bundle.Security:
        """The container's confinement from the agent's policy (inherited through the
        environment) and the task: checked before anything is pulled or made."""
        policy = ContainerPolicy.from_env(work_dir=self.work_dir)
        privileged = is_privileged(self.spec.container)
        if privileged and not policy.allow_privileged:
            raise ContainerError("privileged containers are not allowed on this agent (see its --allow-privileged)")
        extension = (self.spec.container or {}).get("dockyard") or {}
        id_map = None
        if Isolators.from_env().user_namespace and not privileged:
            from executor.containers import userns

            id_map = userns.id_map()
        devices = tuple(self.gpu_claim.devices) if self.gpu_claim is not None else ()
        return bundle.Security(policy.seccomp, privileged, id_map, pids_limit(extension.get("pids_limit")), devices)

    def _prepare(self, layer_dirs: list[Path]) -> None:
        resources = self.spec.resources or {}
        security = self.security
        limits = cgroups.Limits.from_resources(resources, security.pids_limit)
        self.group = cgroups.Cgroup.for_task(self.id)
        self._save()  # layers referenced (prune leaves them) and cgroup named, before any is made
        self.group.create(limits)
        self.watcher = LimitWatcher.watch(self.group, Path(self.spec.sandbox), resources)
        upper, work = self.upper_root / "upper", self.upper_root / "work"
        self.upper_root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.upper_root, 0o700)
        if security.id_map is not None:
            from executor.containers import userns

            userns.check_reachable(self.dir, Path(self.spec.sandbox))
            layer_dirs = userns.mapped_layers(layer_dirs, self.dir / "lower", security.id_map)
            userns.own(security.id_map, upper, work)
        mount_overlay(layer_dirs, upper, work, self.rootfs)
        process = bundle.process_spec(self.spec.command, self.spec.env, self.image.config, self.rootfs)
        if security.id_map is not None:
            userns.own(security.id_map, Path(self.spec.sandbox), uid=process.uid, gid=process.gid)
        else:  # the sandbox is the user's who runs in it (the agent made it its framework user's)
            os.chown(self.spec.sandbox, process.uid, process.gid)
        volumes = self._pinned(bundle.volumes_from(without_secret_volumes(self.spec.container),
                                                   Path(self.spec.sandbox),
                                                   ContainerPolicy.from_env(work_dir=self.work_dir)))
        volumes += self._secret_files(process, security)
        if self.init is None:
            log.warning("%s is missing (Debian package tini): task %s runs as PID 1 of its container, "
                        "which the kernel shields from signals it has no handler for, so SIGTERM may not "
                        "stop it and a kill can wait out the whole grace period",
                        bundle.INIT_BINARY, self.spec.task_id)
        config = bundle.runtime_config(process, Path(self.spec.sandbox), self.group.runtime_path(), volumes,
                                       network_mode(self.spec.container), init=self.init, security=security)
        if self.init is not None:  # the runtime only sees the init: check the task's program here
            problem = bundle.program_error(self.rootfs, process, [m["destination"] for m in config["mounts"]])
            if problem:
                raise ContainerError(f"{self.runtime.name} could not start the container: {problem}")
        if self.secrets is not None:  # the environment holds secrets: config.json stays off the disk
            config["root"]["path"] = str(self.rootfs)
            self.config_dir = self.secrets.directory
        write_json(self.config_dir / "config.json", config)
        self._move(State.PREPARED)

    def _secret_files(self, process: bundle.ProcessSpec, security: bundle.Security) -> list[bundle.Volume]:
        """The task's secrets on a tmpfs of their own, if it has any: each file read-only at its
        path, owned by the task's user (as the host sees it, with a user namespace)."""
        if not has_secrets(self.spec.command, self.spec.container):
            return []
        self.secrets = SecretMount(self.dir / "secrets")
        files = volume_secrets(self.spec.container)
        self.secrets.mount(2 * sum(len(data) for _, data in files) + (1 << 20))
        uid, gid = process.uid, process.gid
        if security.id_map is not None:
            uid, gid = security.id_map.host(uid, gid)
        return [bundle.Volume(item.target, item.host_path, True)
                for item in self.secrets.files(self.spec.container, bundle.SANDBOX, uid, gid)]

    def _pinned(self, volumes: list[bundle.Volume]) -> list[bundle.Volume]:
        """Each volume bound first under this container's directory from the object that was
        checked (rootfs.pin_bind), so the runtime mounts that and nothing a swap put there."""
        pinned = []
        for number, volume in enumerate(volumes):
            target = self.dir / "volumes" / str(number)
            pin_bind(volume.host_path, target)
            pinned.append(bundle.Volume(volume.container_path, target, volume.read_only))
        return pinned

    def _run(self) -> None:
        sandbox = Path(self.spec.sandbox)
        pid_file = self.dir / "init.pid"
        log = self.dir / "runtime.log"
        with open(sandbox / "stdout", "ab") as out, open(sandbox / "stderr", "ab") as err:
            self.popen = self.runtime.run(self.id, self.config_dir, out, err, pid_file, log)
        self._record["runner_pid"] = self.popen.pid
        self._record["runner_start"] = start_time(self.popen.pid)
        deadline = time.monotonic() + START_TIMEOUT
        delay = 0.0005
        while True:
            if pid_file.exists():
                text = pid_file.read_text().strip()
                if text:
                    self.pid = int(text)
                    break
            if self.popen.poll() is not None:
                message = last_error(log) or f"{self.runtime.name} exited with {self.popen.returncode}"
                raise ContainerError(f"{self.runtime.name} could not start the container: {message}")
            if time.monotonic() > deadline:
                raise ContainerError(f"{self.runtime.name} did not start the container in {START_TIMEOUT:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
        if self.init is not None:
            self._wait_for_init(deadline)
        self._move(State.RUNNING)

    def _wait_for_init(self, deadline: float) -> None:
        """Return once the init runs with signals blocked (from then on a SIGTERM is forwarded
        to the task, never dropped), or has already gone. The pid file is written while the
        runtime's own init still waits to exec ours."""
        assert self.popen is not None
        delay = 0.0005
        while not self._init_ready():
            if self.popen.poll() is not None:
                return  # ended already: wait() reports how
            if time.monotonic() > deadline:
                raise ContainerError(f"the container's init did not start in {START_TIMEOUT:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _init_ready(self) -> bool:
        return bundle.init_ready(self.pid, Path(bundle.INIT_PATH).name)

    # -- the Running protocol -----------------------------------------------
    def wait(self, timeout: float | None = None) -> ExitInfo | None:
        if self._exit is not None:
            return self._exit
        assert self.popen is not None
        try:
            status = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        with self._lock:
            if self._exit is None:
                self._exit = self._outcome(status)
                if self.state == State.RUNNING:
                    self._move(State.STOPPED)
        return self._exit

    def _outcome(self, status: int) -> ExitInfo:
        info = describe_exit(status)
        return self.watcher.explain(info) if self.watcher is not None else info

    def signal(self, sig: int) -> None:
        """Every process of the task, read from its cgroup (faster than `runtime kill`)."""
        if self.group is not None and self.state == State.RUNNING:
            self.group.kill(sig)

    def exec_argv(self, args: list[str], *, env: dict[str, str] | None = None,
                  pid_file: Path | None = None) -> list[str]:
        """How to run `args` inside this running container (COMMAND health checks, as Mesos
        runs them in the task's container)."""
        if self.state != State.RUNNING:
            raise ContainerError(f"container {self.id} is not running ({self.state.value})")
        return self.runtime.exec_argv(self.id, args, env=env, pid_file=pid_file)

    def stats(self) -> dict:
        stats = self.group.stats() if self.group is not None else {"timestamp": time.time()}
        disk = (self.spec.resources or {}).get("disk")
        if disk:
            stats["disk_limit_bytes"] = int(disk * 1048576)
        if self.watcher is not None:
            stats["disk_used_bytes"] = self.watcher.disk_used
        return stats

    def destroy(self) -> None:
        with self._lock:
            if self.state == State.DESTROYED:
                return
            if self.watcher is not None:
                self.watcher.stop()
            if self.state == State.RUNNING:
                if self.group is not None:
                    self.group.kill(signals.SIGKILL)
                if self.wait(15) is None:  # init would not die: teardown kills the runtime too
                    self._move(State.STOPPED)
            self._save()
            teardown(self._record, wait_for=self.popen)
            self._move(State.DESTROYED)
            if self.gpu_claim is not None:
                self.gpu_claim.release()


class ContainerLauncher:
    """The `Launcher` for tasks with an image. Runtime: ContainerInfo `dockyard.runtime`,
    else $DOCKYARD_RUNTIME, else runc. Image store size budget (LRU eviction after a pull):
    $DOCKYARD_IMAGE_BUDGET_MB, unlimited by default. Unqualified image names come from
    $DOCKYARD_DOCKER_REGISTRY (the agent's --docker-registry: a URL or an archive dir)."""

    def __init__(self, runtime: str | None = None, budget_bytes: int | None = None) -> None:
        self.runtime = runtime
        budget_mb = os.environ.get("DOCKYARD_IMAGE_BUDGET_MB")
        self.budget_bytes = budget_bytes or (int(float(budget_mb) * 1048576) if budget_mb else None)

    def launch(self, spec: LaunchSpec) -> Container:
        from executor.images.source import RegistrySource
        from executor.images.store import ImageStore

        runtime = (self.runtime or ((spec.container or {}).get("dockyard") or {}).get("runtime")
                   or os.environ.get("DOCKYARD_RUNTIME") or "runc")
        Path(spec.sandbox).mkdir(parents=True, exist_ok=True)
        store = ImageStore(spec.work_dir, budget_bytes=self.budget_bytes, registry=RegistrySource.from_env())
        gpu_claim = claim_gpus(spec.work_dir, float((spec.resources or {}).get("gpus", 0.0)))
        if gpu_claim is not None:
            spec = dataclasses.replace(spec, env={**spec.env, **gpu_claim.environment()})
        container = Container(spec, runtime)
        container.gpu_claim = gpu_claim
        try:
            return container.start(store)
        except BaseException:
            if gpu_claim is not None:
                gpu_claim.release()
            raise
