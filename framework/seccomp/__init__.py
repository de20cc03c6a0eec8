"""Seccomp for container tasks: dockyard's default allow-list, none, or an operator's profile.

The agent's `--seccomp-profile` (`default`, `unconfined` or a file; executors get it
as `$DOCKYARD_SECCOMP_PROFILE`) picks the profile. Profiles are written in the schema
of Docker's default profile (`default.json` here is dockyard's own list in that
schema), so Docker's file works too; rules carry conditions (`includes`/`excludes` on
capabilities, architectures, kernel version) that are settled here, per container,
into the OCI runtime spec's `linux.seccomp`. A file already in that OCI shape is used
as it is. Standard library only.

Shared by the agent, which checks its flag at start (`check_choice`), and the executor's
container bundles (`for_container`).
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import platform
import re
from pathlib import Path
from typing import Iterable, Mapping

from framework.errors import ContainerError

ENV = "DOCKYARD_SECCOMP_PROFILE"
DEFAULT = "default"
UNCONFINED = "unconfined"
DEFAULT_FILE = Path(__file__).with_name("default.json")

# Go's names for architectures (the profile's `arches`), from the kernel's (`uname -m`).
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "i386": "x86", "armv7l": "arm"}
_SCMP_ARCH = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "x86": "SCMP_ARCH_X86",
              "arm": "SCMP_ARCH_ARM"}
_RULE_KEYS = ("names", "action", "errnoRet", "args")


def choice_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The agent's choice as executors see it: `default` unless the agent said otherwise."""
    return ((os.environ if environ is None else environ).get(ENV) or DEFAULT).strip() or DEFAULT


def check_choice(choice: str) -> str:
    """The agent's `--seccomp-profile` made canonical (a file becomes an absolute path), or
    ValueError saying why it cannot be used: checked once at agent start, not per task."""
    choice = choice.strip()
    if choice in (DEFAULT, UNCONFINED):
        return choice
    path = Path(choice).expanduser().resolve()
    try:
        profile = _load(str(path))
        render(profile, ["CAP_CHOWN"])
    except ContainerError as error:
        raise ValueError(str(error)) from None
    return str(path)


def for_container(choice: str, capabilities: Iterable[str]) -> dict | None:
    """The `linux.seccomp` of a container holding `capabilities` (its bounding set);
    None runs it unconfined."""
    if choice == UNCONFINED:
        return None
    return render(_load(str(DEFAULT_FILE) if choice == DEFAULT else choice), capabilities)


@functools.lru_cache(maxsize=8)
def _load(path: str) -> dict:
    """A profile file, parsed once per executor (keyed by path: profiles are agent settings)."""
    try:
        with open(path, encoding="utf-8") as handle:
            profile = json.load(handle)
    except OSError as error:
        raise ContainerError(f"seccomp profile {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise ContainerError(f"seccomp profile {path} is not JSON: {error}") from None
    if not isinstance(profile, dict) or not isinstance(profile.get("defaultAction"), str):
        raise ContainerError(f"seccomp profile {path} has no defaultAction")
    if not isinstance(profile.get("syscalls", []), list):
        raise ContainerError(f"seccomp profile {path}: syscalls must be a list")
    return profile


def render(profile: dict, capabilities: Iterable[str], machine: str | None = None,
           kernel: str | None = None) -> dict:
    """The OCI `linux.seccomp` for a container: rules whose conditions hold, without them."""
    caps = set(capabilities)
    arch = _GO_ARCH.get(machine or platform.machine(), machine or platform.machine())
    release = _version(kernel or os.uname().release)
    seccomp: dict = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        seccomp["defaultErrnoRet"] = profile["defaultErrnoRet"]
    seccomp["architectures"] = _architectures(profile, arch)
    native_only = seccomp["architectures"] == [_SCMP_ARCH.get(arch)]
    rules = []
    for rule in profile.get("syscalls") or []:
        if not isinstance(rule, dict) or not rule.get("names") or not rule.get("action"):
            raise ContainerError(f"seccomp rule {rule!r} needs names and an action")
        if _applies(rule, caps, arch, release):
            kept = {key: rule[key] for key in _RULE_KEYS if key in rule}
            kept["names"] = _native_names(arch, tuple(rule["names"])) if native_only else list(rule["names"])
            if kept["names"]:
                rules.append(kept)
    seccomp["syscalls"] = rules
    return seccomp


@functools.lru_cache(maxsize=256)
def _native_names(arch: str, names: tuple[str, ...]) -> list[str]:
    """`names` less those `arch` has no number for (the 32-bit `*32`, `*64`, `*_time64`
    variants on a 64-bit host), as libseccomp resolves them: the runtime would skip each
    after a lookup of its own, and builds the filter faster without them. All of `names`
    when libseccomp is not there to ask."""
    library = _libseccomp()
    token = library.seccomp_arch_resolve_name(_SCMP_ARCH[arch][len("SCMP_ARCH_"):].lower().encode()) \
        if library is not None else 0
    if not token:
        return list(names)
    return [name for name in names if library.seccomp_syscall_resolve_name_arch(token, name.encode()) >= 0]


@functools.lru_cache(maxsize=1)
def _libseccomp() -> ctypes.CDLL | None:
    try:
        library = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    library.seccomp_arch_resolve_name.argtypes, library.seccomp_arch_resolve_name.restype = \
        [ctypes.c_char_p], ctypes.c_uint32
    library.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    library.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    return library


def _architectures(profile: dict, arch: str) -> list[str]:
    if "architectures" in profile:  # the OCI shape: as written
        return list(profile["architectures"])
    native = _SCMP_ARCH.get(arch)
    for entry in profile.get("archMap") or []:
        if entry.get("architecture") == native:
            return [native, *(entry.get("subArchitectures") or [])]
    return [native] if native else []


def _applies(rule: dict, caps: set[str], arch: str, release: tuple[int, ...]) -> bool:
    """Docker's reading of a rule's conditions: `includes` must all hold (every capability
    named held, this architecture, kernel at least minKernel); any `excludes` match drops it."""
    includes = rule.get("includes") or {}
    excludes = rule.get("excludes") or {}
    if includes.get("arches") and arch not in includes["arches"]:
        return False
    if any(cap not in caps for cap in includes.get("caps") or []):
        return False
    if includes.get("minKernel") and release < _version(includes["minKernel"]):
        return False
    if arch in (excludes.get("arches") or []):
        return False
    return not any(cap in caps for cap in excludes.get("caps") or [])


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("-")[0])[:3])
