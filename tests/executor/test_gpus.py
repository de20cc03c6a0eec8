"""Which of the agent's GPUs a task holds: read once per devices list, never stale when it changes."""
from __future__ import annotations

from pathlib import Path

import pytest

from executor.containers.gpus import agent_gpus, claim
from framework.errors import ContainerError


def test_the_devices_list_is_read_as_it_is_now_and_a_bad_one_is_refused_every_time(tmp_path: Path) -> None:
    two = {"DOCKYARD_GPU_DEVICES": "1=195:1, 0=195:0"}
    assert [(g.index, g.device.rule) for g in agent_gpus(two)] == [(0, "c 195:0 rwm"), (1, "c 195:1 rwm")]
    held = claim(tmp_path, 2, two)
    assert held is not None and [g.index for g in held.gpus] == [0, 1]
    with pytest.raises(ContainerError, match="only 0 of this agent's 2 are free"):
        claim(tmp_path, 1, two)
    held.release()
    assert [g.index for g in agent_gpus({"DOCKYARD_GPU_DEVICES": "3=195:3"})] == [3]
    for _ in range(2):
        with pytest.raises(ContainerError, match="not INDEX=MAJOR:MINOR"):
            agent_gpus({"DOCKYARD_GPU_DEVICES": "zero"})
