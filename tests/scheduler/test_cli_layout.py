"""The client commands' modules: one per command group, shared helpers below them, no import
circle, each file small enough to read; every `--force` says what it overrides."""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

import click

from scheduler.cli import cli
from tests.support.procs import REPO

PACKAGE = REPO / "scheduler" / "cli"
COMMAND_MODULES = {"app", "job", "task", "secret", "scheduler"}
MAX_LINES = 800


def imports_of(path: Path) -> set[str]:
    """The scheduler.cli modules a module imports (`from scheduler.cli import x` counts as x)."""
    found = set()
    with warnings.catch_warnings():  # another module's odd escapes are not this test's business
        warnings.simplefilter("ignore")
        tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "scheduler.cli":
                found |= {f"scheduler.cli.{alias.name}" for alias in node.names}
            elif node.module.startswith("scheduler.cli."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("scheduler.cli")}
    return found


def test_the_modules_import_each_other_one_way_and_only_the_dispatcher_imports_the_group() -> None:
    modules = {p.stem: p for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert COMMAND_MODULES <= set(modules), sorted(modules)
    graph = {name: {m.rsplit(".", 1)[1] for m in imports_of(path)} for name, path in modules.items()}
    for name, targets in graph.items():
        assert "cli" not in targets and "__init__" not in targets, f"{name} imports the assembled group"
        assert targets <= set(modules), f"{name} imports {targets - set(modules)}"

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, f"import circle: {' -> '.join(trail + (name,))}"
        for target in graph[name]:
            visit(target, trail + (name,))

    for name in graph:
        visit(name, ())
    helpers = set(modules) - COMMAND_MODULES
    for name in helpers:  # shared helpers never reach up into a command group
        assert not graph[name] & COMMAND_MODULES, (name, graph[name])
    assert imports_of(PACKAGE / "__init__.py") >= {f"scheduler.cli.{m}" for m in COMMAND_MODULES}
    sources = [REPO / "dockyard.py", *(p for top in ("framework", "scheduler", "executor", "bench")
                                       for p in (REPO / top).glob("**/*.py"))]
    outside = [p for p in sources if PACKAGE not in p.parents
               and any(i.startswith("scheduler.cli") for i in imports_of(p))]
    assert outside in ([], [REPO / "dockyard.py"]), outside
    assert not [p for p in ("cli_apps.py", "secrets/cli.py") if (REPO / "scheduler" / p).exists()]


def test_every_module_is_short_enough_to_read() -> None:
    for path in [*PACKAGE.glob("*.py"), REPO / "scheduler" / "spec_fields.py"]:
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{path.name}: {lines} lines"


def commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix}{name} ")
    return found


def test_every_force_option_says_what_it_overrides() -> None:
    forced = [(name, param) for name, command in commands(cli) for param in command.params
              if isinstance(param, click.Option) and "--force" in param.opts]
    assert {name for name, _ in forced} >= {"app deploy", "app scale", "app restart", "app rollback", "app delete",
                                            "app deployment cancel", "job delete"}
    for name, option in forced:
        assert option.help and len(option.help) > 20, f"dockyard {name} --force has no help"
