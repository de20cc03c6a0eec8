"""A thin wrapper over an OCI runtime CLI (runc by default, crun selectable).

Containers run in the foreground (`run`), so the runtime process is our child and
its exit status is the container's: `status` if init exited, 128+N if a signal
killed it. The init is tini when the host has it (see `bundle.INIT_BINARY`), which
exits with the task's status, or 128+N when signal N killed the task. Runtime state lives under `<work_dir>/runtime/<name>` (its `--root`),
so clean-up finds exactly what this agent made. Errors become `ContainerError`
carrying the runtime's own message.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import IO

from framework.errors import ContainerError

RUNTIMES = ("runc", "crun")


class Runtime:
    def __init__(self, name: str, work_dir: Path) -> None:
        if name not in RUNTIMES:
            raise ContainerError(f"unknown OCI runtime {name!r} (choose {', '.join(RUNTIMES)})")
        binary = shutil.which(name)
        if binary is None:
            raise ContainerError(f"OCI runtime {name} is not installed")
        self.name = name
        self.binary = binary
        self.root = Path(work_dir) / "runtime" / name
        self.root.mkdir(parents=True, exist_ok=True)

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", str(self.root), *args]

    def _call(self, *args: str, ok_missing: bool = False, timeout: float = 30) -> str:
        result = subprocess.run(self._argv(*args), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            message = result.stderr.strip() or result.stdout.strip()
            if ok_missing and ("does not exist" in message or "not found" in message
                               or "No such file" in message or "not running" in message
                               or "container not running" in message):
                return ""
            raise ContainerError(f"{self.name} {args[0]} failed: {message}")
        return result.stdout

    def run(self, container_id: str, bundle: Path, stdout: IO[bytes], stderr: IO[bytes],
            pid_file: Path, log: Path) -> subprocess.Popen:
        """Start `runtime run` in the foreground; the caller waits for `pid_file`."""
        # runc keeps the stopped container (and its cgroup, where cgroup v1 counts OOM
        # kills) until we delete it; crun has no --keep, its limits are watched live.
        keep = ["--keep"] if self.name == "runc" else []
        argv = [self.binary, "--root", str(self.root), "--log", str(log), "--log-format", "json",
                "run", *keep, "--bundle", str(bundle), "--pid-file", str(pid_file), container_id]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                start_new_session=True, close_fds=True)

    def exec_argv(self, container_id: str, args: list[str], *, env: dict[str, str] | None = None,
                  pid_file: Path | None = None) -> list[str]:
        """argv of `runtime exec`: `args` in the running container (its namespaces, root
        filesystem and cgroup; user, cwd, environment and security from its config.json),
        plus `env`. `pid_file` receives the host pid of the new process."""
        argv = self._argv("exec")
        if pid_file is not None:
            argv += ["--pid-file", str(pid_file)]
        for name, value in (env or {}).items():
            argv += ["--env", f"{name}={value}"]
        return [*argv, container_id, *args]

    def kill(self, container_id: str, sig: int) -> None:
        """Signal every process of the container (`--all`); a gone container is fine."""
        self._call("kill", "--all", container_id, str(sig), ok_missing=True)

    def state(self, container_id: str) -> dict | None:
        result = subprocess.run(self._argv("state", container_id), capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            return None
        try:
            return json.loads(result.stdout)
        except ValueError:
            return None

    def delete(self, container_id: str) -> None:
        self._call("delete", "--force", container_id, ok_missing=True)
        leftover = self.root / container_id
        if leftover.exists():
            shutil.rmtree(leftover, ignore_errors=True)

    def list(self) -> list[str]:
        """Ids of every container under our root, including ones the runtime lost track of."""
        ids = set()
        if self.root.is_dir():
            ids.update(p.name for p in self.root.iterdir() if p.is_dir())
        return sorted(ids)


def last_error(log: Path) -> str:
    """The runtime's last error message from its JSON log (for a start failure)."""
    message = ""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            message = line or message
            continue
        if entry.get("level") in ("error", "fatal") or not message:
            message = entry.get("msg", message)
    return message
