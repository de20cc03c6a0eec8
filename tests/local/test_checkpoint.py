"""The agent's checkpoint files: written whole, or appended a line at a time."""
from __future__ import annotations

from pathlib import Path

from framework.local.agent import checkpoint


def test_appended_states_are_read_back_in_order(tmp_path: Path) -> None:
    updates = tmp_path / "task.updates"
    for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"):
        checkpoint.append_line(updates, {"state": state})
    assert [u["state"] for u in checkpoint.read_lines(updates)] == ["TASK_STARTING", "TASK_RUNNING",
                                                                     "TASK_FINISHED"]


def test_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    updates = tmp_path / "task.updates"
    checkpoint.append_line(updates, {"state": "TASK_RUNNING"})
    with open(updates, "ab") as out:  # a crash in the middle of appending the next state
        out.write(b'{"state":"TASK_FIN')
    assert checkpoint.read_lines(updates) == [{"state": "TASK_RUNNING"}]
    assert checkpoint.read_lines(tmp_path / "absent") == []


def test_whole_files_replace_atomically(tmp_path: Path) -> None:
    target = tmp_path / "a" / "task.json"
    checkpoint.write_json(target, {"state": "TASK_STAGING"})
    checkpoint.write_json(target, {"state": "TASK_RUNNING"})
    assert checkpoint.read_json(target) == {"state": "TASK_RUNNING"}
    assert [p.name for p in target.parent.iterdir()] == ["task.json"]


def test_a_record_written_once_reads_back_and_a_torn_one_reads_as_absent(tmp_path: Path) -> None:
    target = tmp_path / "tasks" / "t1" / "task.json"
    checkpoint.write_new(target, {"info": {"name": "t1"}})
    assert checkpoint.read_json(target) == {"info": {"name": "t1"}}
    checkpoint.write_new(target, {"info": {"name": "again"}})  # exists: replaced whole
    assert checkpoint.read_json(target) == {"info": {"name": "again"}}
    target.write_text('{"info": {"na')  # a crash mid-write
    assert checkpoint.read_json(target) is None


def test_lines_rewritten_whole_keep_only_what_is_given(tmp_path: Path) -> None:
    updates = tmp_path / "status.updates"
    for n in range(5):
        checkpoint.append_line(updates, {"update": n})
    checkpoint.write_lines(updates, [{"update": 3}, {"update": 4}])
    assert checkpoint.read_lines(updates) == [{"update": 3}, {"update": 4}]
    assert [p.name for p in tmp_path.iterdir()] == ["status.updates"]
