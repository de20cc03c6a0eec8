"""Control groups for task containers: detect v1/v2, create, limit, read, remove.

Hosts differ: pure v1, pure v2, or hybrid (v1 controllers with a v2 hierarchy
mounted beside them, as on the dev VM). We never assume; `detect()` reads
/proc/self/mountinfo and picks, per controller, the hierarchy that actually
carries it. Task cgroups nest under the calling process's own cgroup (so on a
real Mesos agent the executor's accounting still holds) in a `dockyard/<id>`
subtree. Standard library only: the executor imports this at start.
"""
from __future__ import annotations

import errno
import os
import select
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from framework.errors import ContainerError

# Controllers whose limits and statistics we use.
CONTROLLERS = ("cpu", "cpuacct", "memory", "pids")
SUBTREE = "dockyard"
CFS_PERIOD_US = 100_000
MIN_SHARES = 2
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Layout:
    """Where each controller lives. version 1: `mounts` per controller; 2: `unified`."""

    version: int
    mounts: dict[str, Path] = field(default_factory=dict)  # v1 controller -> mount point
    unified: Path | None = None  # the v2 mount, if any (hybrid hosts have both)

    def describe(self) -> str:
        if self.version == 2:
            return f"cgroup v2 at {self.unified}"
        extra = f", v2 beside it at {self.unified}" if self.unified else ""
        return f"cgroup v1 ({', '.join(sorted(self.mounts))}){extra}"


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(root, mount point, fstype, super options) for each cgroup mount."""
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            parts = left.split()
            fstype, _source, options = (right.split() + ["", "", ""])[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append((parts[3], parts[4].replace("\\040", " "), fstype, options))
    return found


_LAYOUT: Layout | None = None


def detect(refresh: bool = False) -> Layout:
    """The host's cgroup layout: v1 when the v1 hierarchies carry our controllers, else v2."""
    global _LAYOUT
    if _LAYOUT is not None and not refresh:
        return _LAYOUT
    v1: dict[str, Path] = {}
    unified: Path | None = None
    for _root, point, fstype, options in _mountinfo():
        if fstype == "cgroup2":
            unified = unified or Path(point)
            continue
        for option in options.split(","):
            if option in CONTROLLERS and option not in v1:
                v1[option] = Path(point)
    if all(c in v1 for c in ("cpu", "memory", "pids")):
        _LAYOUT = Layout(1, v1, unified)
    elif unified is not None:
        available = (unified / "cgroup.controllers").read_text().split()
        missing = [c for c in ("cpu", "memory", "pids") if c not in available]
        if missing:
            raise ContainerError(f"cgroup v2 at {unified} lacks controllers {missing}")
        _LAYOUT = Layout(2, {}, unified)
    else:
        raise ContainerError("no usable cgroup hierarchy (need cpu, memory, pids)")
    return _LAYOUT


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """The cgroup path of `pid` per v1 controller, and its v2 path under the key ''."""
    paths: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _num, names, path = line.rstrip("\n").split(":", 2)
            for name in names.split(",") if names else [""]:
                paths.setdefault(name, path)
    return paths


def own_cgroup(controller: str, pid: int | str = "self") -> str:
    """The cgroup path of `pid` for a v1 controller, or its v2 path when controller is ''."""
    return own_cgroups(pid).get(controller, "/")


def _write(path: Path, value: str | int) -> None:
    try:
        path.write_text(str(value))
    except OSError as error:
        raise ContainerError(f"cannot write {value!r} to {path}: {error.strerror}") from error


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text()
    except OSError:
        return default


def _keyed(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


@dataclass
class Limits:
    """What a task asked for; None means no limit of that kind."""

    cpus: float | None = None
    mem_mb: float | None = None
    pids: int | None = 4096

    @classmethod
    def from_resources(cls, resources: dict[str, float], pids: int | None = 4096) -> "Limits":
        cpus = resources.get("cpus")
        mem = resources.get("mem")
        return cls(float(cpus) if cpus else None, float(mem) if mem else None, pids)


class OomNotifier:
    """v1: an eventfd registered on `memory.oom_control` (readable once the cgroup is
    under OOM); v2: `memory.events` itself, which signals priority data on each change.
    `rearm()` after each wake-up (empties the eventfd, or re-reads the file)."""

    def __init__(self, fd: int, mask: int, v2: bool) -> None:
        self.fd = fd
        self.mask = mask
        self._v2 = v2

    def rearm(self) -> None:
        try:
            if self._v2:
                os.pread(self.fd, 4096, 0)
            else:
                os.eventfd_read(self.fd)
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


class Cgroup:
    """One task's cgroup, the same relative path in every hierarchy we use.

    `rel` is relative to each hierarchy's root (e.g. `/user.slice/dockyard/ct-1`);
    use `Cgroup.for_task` to nest under the caller's own cgroup.
    """

    def __init__(self, paths: dict[str, str], layout: Layout | None = None,
                 extra: list[Path] | None = None) -> None:
        self.layout = layout or detect()
        self.paths = paths  # controller -> path relative to its hierarchy root; "" key for v2
        # Directories an OCI runtime also makes for us in hierarchies we do not limit
        # (v1 `devices`, `freezer`, `name=systemd`, the v2 mount beside them): removed too.
        self.extra = list(extra or [])
        self._dirs: list[Path] | None = None

    @classmethod
    def for_task(cls, name: str, layout: Layout | None = None) -> "Cgroup":
        """A cgroup `dockyard/<name>` under the calling process's own cgroup."""
        layout = layout or detect()
        if layout.version == 2:
            return cls({"": _join(_v2_base(layout), SUBTREE, name)}, layout)
        extra = [mount / own.lstrip("/") / SUBTREE / name for mount, own in _other_hierarchies(layout)]
        own = own_cgroups()
        return cls({c: _join(own.get(c, "/"), SUBTREE, name) for c in CONTROLLERS if c in layout.mounts},
                   layout, extra)

    # -- paths --------------------------------------------------------------
    def dir(self, controller: str) -> Path:
        if self.layout.version == 2:
            assert self.layout.unified is not None
            return self.layout.unified / self.paths[""].lstrip("/")
        return self.layout.mounts[controller] / self.paths[controller].lstrip("/")

    def dirs(self) -> list[Path]:
        """The directories we limit and read (one per hierarchy)."""
        if self._dirs is None:
            if self.layout.version == 2:
                self._dirs = [self.dir("")]
            else:
                self._dirs = list(dict.fromkeys(self.dir(controller) for controller in self.paths))
        return list(self._dirs)

    def all_dirs(self) -> list[Path]:
        """Ours plus those a runtime made in other hierarchies: what `remove` deletes."""
        return self.dirs() + [p for p in self.extra if p not in self.dirs()]

    def runtime_path(self, child: str = "ctr") -> str:
        """The `linux.cgroupsPath` to give an OCI runtime so it nests its cgroup in ours."""
        if self.layout.version == 2:
            return _join(self.paths[""], child)
        # v1 runtimes apply one path to every hierarchy; a relative path is joined to the
        # runtime's own cgroup per controller, which is ours (the runtime is our child):
        # the same nesting as `for_task`.
        tails = set()
        for controller, path in self.paths.items():
            own = own_cgroup(controller)
            if not path.startswith(own):
                return _join(path, child)
            tails.add(path[len(own):].strip("/"))
        if len(tails) != 1:
            return _join(self.paths.get("memory", "/"), child)
        return _join(tails.pop(), child).lstrip("/")

    def exists(self) -> bool:
        return any(path.is_dir() for path in self.dirs())

    # -- lifecycle ----------------------------------------------------------
    def create(self, limits: Limits) -> "Cgroup":
        """Make the cgroup in each hierarchy and apply `limits`."""
        if self.layout.version == 2:
            self._create_v2()
        else:
            for path in self.dirs():
                path.mkdir(parents=True, exist_ok=True)
        self.apply(limits)
        return self

    def _create_v2(self) -> None:
        assert self.layout.unified is not None
        target = self.dir("")
        # Enable our controllers on every ancestor below the root, so the leaf gets them.
        parts = Path(self.paths[""].lstrip("/")).parts
        current = self.layout.unified
        for part in parts:
            wanted = [c for c in ("cpu", "memory", "pids")
                      if c in _read(current / "cgroup.controllers").split()]
            enabled = _read(current / "cgroup.subtree_control").split()
            missing = [f"+{c}" for c in wanted if c not in enabled]
            if missing:
                try:
                    (current / "cgroup.subtree_control").write_text(" ".join(missing))
                except OSError as error:
                    raise ContainerError(f"cannot delegate {missing} below {current}: {error.strerror} "
                                         "(a v2 cgroup holding processes cannot have limited children)"
                                         ) from error
            current = current / part
            current.mkdir(exist_ok=True)
        assert current == target

    def cpu_settings(self, cpus: float) -> list[tuple[Path, str]]:
        """The files, and what to write there, that give this cgroup `cpus`: shares and a CFS quota."""
        if self.layout.version == 2:
            base = self.dir("")
            return [(base / "cpu.weight", str(max(1, min(10000, int(cpus * 100))))),
                    (base / "cpu.max", f"{int(cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}")]
        if "cpu" not in self.paths:
            return []
        cpu = self.dir("cpu")
        return [(cpu / "cpu.shares", str(max(MIN_SHARES, int(cpus * 1024)))),
                (cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US)),
                (cpu / "cpu.cfs_quota_us", str(max(1000, int(cpus * CFS_PERIOD_US))))]

    def apply(self, limits: Limits) -> None:
        for path, value in self.cpu_settings(limits.cpus) if limits.cpus else []:
            _write(path, value)
        if self.layout.version == 2:
            base = self.dir("")
            if limits.mem_mb:
                _write(base / "memory.max", int(limits.mem_mb * 1024 * 1024))
                if (base / "memory.swap.max").exists():
                    _write(base / "memory.swap.max", 0)
            if limits.pids:
                _write(base / "pids.max", limits.pids)
            return
        if limits.mem_mb and "memory" in self.paths:
            memory = self.dir("memory")
            value = int(limits.mem_mb * 1024 * 1024)
            _write(memory / "memory.limit_in_bytes", value)
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", value)
        if limits.pids and "pids" in self.paths:
            _write(self.dir("pids") / "pids.max", limits.pids)

    def add(self, pid: int | str) -> None:
        """Move `pid` (0 = the writing process) into every hierarchy of this cgroup."""
        for path in self.dirs():
            _write(path / "cgroup.procs", pid)

    def _remove_leaves(self) -> bool:
        """The common case, cheaply: every directory is an empty leaf and goes with one rmdir."""
        for directory in self.all_dirs():
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                return False  # busy or has children: the thorough way
        return True

    def procs(self) -> list[int]:
        """Every process in the cgroup or below it.

        One hierarchy tells (whatever joins the task's cgroup joins it in all of them):
        `pids` where it exists, the first otherwise.
        """
        found: set[int] = set()
        census = [self.dir("pids")] if self.layout.version == 1 and "pids" in self.paths else self.dirs()[:1]
        for root in census:
            for directory, _subdirs, files in os.walk(root):
                if "cgroup.procs" in files:
                    found.update(int(x) for x in _read(Path(directory) / "cgroup.procs").split())
        return sorted(found)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.procs():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left, then remove the cgroup (children first) in every hierarchy."""
        if self._remove_leaves():
            return
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            if attempt:  # usually empty already (the task ended): rmdir before reading every procs file
                self.kill()
            busy = []
            for root in self.all_dirs():
                if not root.exists():
                    continue
                for directory, _subdirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(directory)
                    except FileNotFoundError:
                        pass
                    except OSError as error:
                        if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                            raise ContainerError(f"cannot remove cgroup {directory}: {error}") from error
                        busy.append(directory)
            if not busy:
                return
            if time.monotonic() > deadline:
                raise ContainerError(f"cgroups still busy after {timeout}s: {busy}")
            if attempt:
                time.sleep(0.02)
            attempt += 1

    # -- readings -----------------------------------------------------------
    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed because of this cgroup's limit."""
        if self.layout.version == 2:
            return _keyed(_read(self.dir("") / "memory.events")).get("oom_kill", 0)
        if "memory" not in self.paths:
            return 0
        # v1 counts a kill in the victim's own memcg, not in the ancestor whose limit was
        # hit: sum the whole subtree (the runtime's child cgroup included).
        total = 0
        found = False
        for directory, _dirs, _files in os.walk(self.dir("memory")):
            control = _keyed(_read(Path(directory) / "memory.oom_control"))
            if "oom_kill" in control:
                found = True
                total += control["oom_kill"]
        if found:
            return total
        # Kernels before 4.13 have no counter: a full cgroup that failed to charge says so.
        usage = int(_read(self.dir("memory") / "memory.max_usage_in_bytes", "0") or 0)
        limit = int(_read(self.dir("memory") / "memory.limit_in_bytes", "0") or 0)
        failed = int(_read(self.dir("memory") / "memory.failcnt", "0") or 0)
        return 1 if failed and limit and usage >= limit else 0

    def oom_notifier(self) -> "OomNotifier | None":
        """A descriptor the kernel wakes when this cgroup hits its memory limit, for an
        epoll loop: no reading of counters until something happened (as Mesos's memory
        isolator listens). None without a memory controller."""
        if self.layout.version == 2:
            fd = os.open(self.dir("") / "memory.events", os.O_RDONLY | os.O_CLOEXEC)
            notifier = OomNotifier(fd, select.EPOLLPRI | select.EPOLLERR, v2=True)
            notifier.rearm()  # from here on: memory.events signals each change (kernfs notify)
            return notifier
        if "memory" not in self.paths:
            return None
        directory = self.dir("memory")
        notifier = OomNotifier(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK), select.EPOLLIN, v2=False)
        try:  # the kernel keeps the registration, not the oom_control descriptor it names
            control = os.open(directory / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _write(directory / "cgroup.event_control", f"{notifier.fd} {control}")
            finally:
                os.close(control)
        except (OSError, ContainerError):
            notifier.close()
            raise
        return notifier

    def peak_memory(self) -> int:
        """The most memory the cgroup ever held (bytes); 0 when the kernel does not say."""
        if self.layout.version == 2:
            text = _read(self.dir("") / "memory.peak").strip()
        elif "memory" in self.paths:
            text = _read(self.dir("memory") / "memory.max_usage_in_bytes").strip()
        else:
            text = ""
        return int(text) if text.isdigit() else 0

    def stats(self) -> dict:
        """ResourceStatistics (Mesos's shape) from this cgroup."""
        return read_stats(self)


LEAF = "dockyard-leaf"


def _v2_base(layout: Layout) -> str:
    """Our own v2 cgroup, made able to delegate controllers.

    v2 forbids enabling controllers for children of a cgroup that holds processes
    (unless it is the root). If ours does, its processes move into a leaf child
    (`dockyard-leaf`), this one first, so `dockyard/<id>` siblings can get cpu, memory
    and pids. A Mesos agent delegates an empty cgroup per executor, where only we are
    there; `dockyard up` from a login shell shares the session's cgroup with the shell
    and its other processes, which move along (they stay inside the same cgroup
    subtree, so its accounting holds), as container runtimes do with a busy cgroup.
    Verified in a cgroup v2 guest (tests/containers/test_cgroup_v2_vm.py).
    """
    own = own_cgroup("")
    base = own[: -len(LEAF) - 1] if own.endswith("/" + LEAF) else own
    if base in ("", "/"):
        return "/"
    assert layout.unified is not None
    directory = layout.unified / base.lstrip("/")
    enabled = _read(directory / "cgroup.subtree_control").split()
    if all(c in enabled for c in ("cpu", "memory", "pids")):
        return base
    leaf = directory / LEAF
    me = str(os.getpid())
    for _round in range(5):  # processes may fork while we move them
        pids = _read(directory / "cgroup.procs").split()
        if not pids:
            break
        leaf.mkdir(exist_ok=True)
        for pid in sorted(pids, key=lambda p: p != me):
            try:
                (leaf / "cgroup.procs").write_text(pid)
            except OSError:
                if pid == me:
                    return base  # cannot move: `_create_v2` then says why limits are impossible
                # another process that exited meanwhile, or one we may not move: left as is
    return base


_OTHERS: dict[tuple, list[tuple[Path, str]]] = {}


def _other_hierarchies(layout: Layout) -> list[tuple[Path, str]]:
    """(mount point, our own cgroup there) for v1 hierarchies we do not limit, and v2 beside.

    Read once per layout: the mounts and our own cgroups there do not change under us.
    """
    key = (layout.version, tuple(sorted(layout.mounts.items())), layout.unified)
    if key not in _OTHERS:
        _OTHERS[key] = _find_other_hierarchies(layout)
    return _OTHERS[key]


def _find_other_hierarchies(layout: Layout) -> list[tuple[Path, str]]:
    ours = set(layout.mounts.values())
    found = []
    own_lines = {}
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _num, names, path = line.rstrip("\n").split(":", 2)
            own_lines[names] = path
    for _root, point, fstype, options in _mountinfo():
        mount = Path(point)
        if mount in ours:
            continue
        if fstype == "cgroup2":
            found.append((mount, own_lines.get("", "/")))
            continue
        names = [o for o in options.split(",") if o not in ("rw", "ro") and "=" not in o or o.startswith("name=")]
        for key, path in own_lines.items():
            if key and set(key.split(",")) & set(names):
                found.append((mount, path))
                break
    return found


def _join(*parts: str) -> str:
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    return "/" + joined


def read_stats(group: Cgroup) -> dict:
    """Mesos ResourceStatistics fields from a cgroup; missing files give missing fields."""
    stats: dict = {"timestamp": time.time()}
    if group.layout.version == 2:
        base = group.dir("")
        cpu = _keyed(_read(base / "cpu.stat"))
        if cpu:
            stats["cpus_user_time_secs"] = cpu.get("user_usec", 0) / 1e6
            stats["cpus_system_time_secs"] = cpu.get("system_usec", 0) / 1e6
            stats["cpus_nr_periods"] = cpu.get("nr_periods", 0)
            stats["cpus_nr_throttled"] = cpu.get("nr_throttled", 0)
            stats["cpus_throttled_time_secs"] = cpu.get("throttled_usec", 0) / 1e6
        quota = _read(base / "cpu.max").split()
        if len(quota) == 2 and quota[0] != "max":
            stats["cpus_limit"] = int(quota[0]) / int(quota[1])
        memory = _keyed(_read(base / "memory.stat"))
        current = _read(base / "memory.current").strip()
        if current:
            stats["mem_total_bytes"] = int(current)
        if memory:
            stats["mem_rss_bytes"] = memory.get("anon", 0)
            stats["mem_file_bytes"] = memory.get("file", 0)
            stats["mem_cache_bytes"] = memory.get("file", 0)
        limit = _read(base / "memory.max").strip()
        if limit and limit != "max":
            stats["mem_limit_bytes"] = int(limit)
        pids = _read(base / "pids.current").strip()
        if pids:
            stats["processes"] = int(pids)
        stats["threads"] = len(_read(base / "cgroup.threads").split())
        return stats
    paths = group.paths
    if "cpuacct" in paths:
        acct = _keyed(_read(group.dir("cpuacct") / "cpuacct.stat"))
        if acct:
            stats["cpus_user_time_secs"] = acct.get("user", 0) / _CLOCK_TICKS
            stats["cpus_system_time_secs"] = acct.get("system", 0) / _CLOCK_TICKS
    if "cpu" in paths:
        cpu = group.dir("cpu")
        quota = int(_read(cpu / "cpu.cfs_quota_us", "-1").strip() or -1)
        period = int(_read(cpu / "cpu.cfs_period_us", "0").strip() or 0)
        if quota > 0 and period:
            stats["cpus_limit"] = quota / period
        throttle = _keyed(_read(cpu / "cpu.stat"))
        if throttle:
            stats["cpus_nr_periods"] = throttle.get("nr_periods", 0)
            stats["cpus_nr_throttled"] = throttle.get("nr_throttled", 0)
            stats["cpus_throttled_time_secs"] = throttle.get("throttled_time", 0) / 1e9
    if "memory" in paths:
        memory = group.dir("memory")
        mstat = _keyed(_read(memory / "memory.stat"))
        if mstat:
            stats["mem_rss_bytes"] = mstat.get("total_rss", mstat.get("rss", 0))
            stats["mem_cache_bytes"] = mstat.get("total_cache", mstat.get("cache", 0))
            stats["mem_file_bytes"] = mstat.get("total_mapped_file", 0)
        usage = _read(memory / "memory.usage_in_bytes").strip()
        if usage:
            stats["mem_total_bytes"] = int(usage)
        limit = _read(memory / "memory.limit_in_bytes").strip()
        if limit and int(limit) < 1 << 62:
            stats["mem_limit_bytes"] = int(limit)
    if "pids" in paths:
        current = _read(group.dir("pids") / "pids.current").strip()
        if current:
            stats["processes"] = int(current)
    return stats


def stats_for_pid(pid: int) -> dict:
    """ResourceStatistics for the cgroup a process sits in (the agent's fallback reader)."""
    layout = detect()
    if layout.version == 2:
        return read_stats(Cgroup({"": own_cgroup("", pid)}, layout))
    own = own_cgroups(pid)
    return read_stats(Cgroup({c: own.get(c, "/") for c in CONTROLLERS if c in layout.mounts}, layout))


def find_subtrees(name: str = SUBTREE, max_depth: int = 6) -> list[Path]:
    """Every `dockyard` subtree directory in any hierarchy (for clean-up after a crash)."""
    layout = detect()
    roots = set(layout.mounts.values())
    if layout.unified:
        roots.add(layout.unified)
    found = []
    for root in roots:
        base_depth = len(root.parts)
        for directory, subdirs, _files in os.walk(root):
            depth = len(Path(directory).parts) - base_depth
            if Path(directory).name == name and depth > 0:
                found.append(Path(directory))
                subdirs[:] = []
            elif depth >= max_depth:
                subdirs[:] = []
    return found
