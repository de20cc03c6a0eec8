"""The task state machine: legal moves, repeats, illegal moves, persistence shape."""
from __future__ import annotations

import json

import pytest

from scheduler.tasks import TERMINAL, TRANSITIONS, IllegalTransition, State, TaskRecord, exit_code_from


def test_happy_path_records_history_and_times() -> None:
    record = TaskRecord("t1", "job:a/r1", "a", created_at=1.0)
    assert record.move(State.LAUNCHED, 2.0)
    assert record.apply_status({"state": "TASK_STARTING"}, 3.0)
    assert record.apply_status({"state": "TASK_RUNNING", "agent_id": {"value": "S1"}}, 4.0)
    assert record.apply_status({"state": "TASK_FINISHED", "message": "Command exited with status 0"}, 5.0)
    assert record.terminal and record.exit_code == 0
    assert (record.launched_at, record.started_at, record.finished_at) == (2.0, 4.0, 5.0)
    assert record.agent_id == "S1"
    assert [s for s, _ in record.history] == ["LAUNCHED", "TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]


def test_repeat_is_a_no_op() -> None:
    record = TaskRecord("t1", "o", "n", state=State.RUNNING)
    assert record.apply_status({"state": "TASK_RUNNING"}, 1.0) is False
    assert record.history == []


@pytest.mark.parametrize("source,target", [
    (State.FINISHED, State.RUNNING),
    (State.RUNNING, State.STARTING),
    (State.PENDING, State.RUNNING),
    (State.KILLED, State.FAILED),
])
def test_illegal_moves_name_both_ends(source: State, target: State) -> None:
    record = TaskRecord("t9", "o", "n", state=source)
    with pytest.raises(IllegalTransition) as caught:
        record.move(target, 1.0)
    assert source.value in str(caught.value) and target.value in str(caught.value)
    assert record.state == source


def test_table_is_total_and_terminal_states_are_final() -> None:
    assert set(TRANSITIONS) == set(State)
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
    for state in State:
        if not state.terminal and state not in (State.PENDING,):
            assert TERMINAL & TRANSITIONS[state], f"{state} can never end"


def test_exit_code_from_message_and_failure() -> None:
    assert exit_code_from({"state": "TASK_FAILED", "message": "Command exited with status 3"}) == 3
    assert exit_code_from({"state": "TASK_KILLED", "message": "Command terminated with signal SIGTERM"}) is None


def test_record_round_trips_through_json() -> None:
    record = TaskRecord("t1", "o", "n", created_at=1.0)
    record.move(State.LAUNCHED, 2.0)
    copy = TaskRecord.from_json(record.to_json(), version=7)
    assert copy.state == State.LAUNCHED and copy.history == record.history and copy.version == 7
    full = TaskRecord("t2", "o", "n", State.FINISHED, "a1", "host1", "e1", [31000, 31001], 1.0, 2.0, 3.0, 4.0,
                      0, "Command exited with status 0", "REASON_X", True, "tasks/t2",
                      [("TASK_RUNNING", 3.0), ("TASK_FINISHED", 4.0)], version=3)
    again = TaskRecord.from_json(full.to_json(), version=3)
    assert again == full
    assert "version" not in json.loads(full.to_json())
