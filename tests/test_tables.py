"""framework/tables.py: tables keep every value whole, on a terminal too."""
from __future__ import annotations

import io

from framework.tables import console, table


def test_a_table_is_as_wide_as_its_content_even_on_a_narrow_terminal() -> None:
    long_id = "demo_web.instance-" + "8179db17-27f5-4057-b48e-c245bbd4a021" * 3
    out = io.StringIO()
    terminal = console(file=out, force_terminal=True, color_system=None)
    shown = table("ID", "STATE", title="tasks")
    shown.add_row(long_id, "TASK_RUNNING")
    terminal.print(shown)
    lines = [line.rstrip() for line in out.getvalue().splitlines()]
    assert lines[0] == "tasks"
    assert lines[1].split() == ["ID", "STATE"]
    assert lines[2].split() == [long_id, "TASK_RUNNING"]
