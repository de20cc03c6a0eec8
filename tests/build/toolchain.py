"""A build context holding this host's gcc, binutils and static libc, for a C build stage.

Every file sits at the path it has on the host, as a hard link (or a copy) of the real
file: a build context may hold no symlink that points out of it, and the image needs
no /usr merge. Only what compiling and statically linking a small C program needs goes
in (about 60 MB, most of it cc1).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

STARTFILES = ("crt1.o", "crti.o", "crtn.o", "crtbeginT.o", "crtend.o", "libgcc.a", "libgcc_eh.a", "libc.a",
              "liblto_plugin.so")


def _gcc(*args: str) -> str:
    return subprocess.run(["gcc", *args], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def _libraries(path: Path) -> list[str]:
    listed = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=60).stdout
    return re.findall(r"(/\S+) \(0x", listed)


def toolchain_context(root: Path, source: str) -> None:
    """`root/toolchain/` (the tree to COPY to /) and `root/hello.c` (`source`)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "hello.c").write_text(source)
    files: dict[str, Path] = {"/usr/bin/gcc": Path(shutil.which("gcc") or "gcc").resolve()}
    for name in ("cc1", "collect2", "lto-wrapper"):
        files[_gcc(f"-print-prog-name={name}")] = Path(_gcc(f"-print-prog-name={name}")).resolve()
    for name in ("as", "ld"):
        files[f"/usr/bin/{name}"] = Path(shutil.which(name) or name).resolve()
    for name in STARTFILES:
        found = _gcc(f"-print-file-name={name}")
        files[os.path.normpath(found)] = Path(found).resolve()
    dependencies = subprocess.run(["gcc", "-M", "-O2", str(root / "hello.c")], capture_output=True, text=True,
                                  check=True, timeout=60).stdout
    for header in dependencies.replace("\\\n", " ").split(":", 1)[1].split():
        if header.startswith("/usr/"):
            files[os.path.normpath(header)] = Path(header).resolve()
    for binary in list(files.values()):
        if binary.suffix not in (".o", ".a", ".h") and binary.read_bytes()[:4] == b"\x7fELF":
            for library in _libraries(binary):
                files[library] = Path(library).resolve()
    tree = root / "toolchain"
    for inside, host in files.items():
        target = tree / inside.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(host, target)
            except OSError:
                shutil.copy2(host, target)
    (tree / "tmp").mkdir(exist_ok=True)
    (tree / "tmp").chmod(0o1777)
