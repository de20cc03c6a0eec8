"""Mesos JSON on the scheduler's side: reading agents, writing launches.

`agents` reads what Mesos says of an agent (offers for live placement, the master's
`/state` for the dry-run preview) into one `AgentView`; `launch` writes the
CommandInfo, ContainerInfo, TaskInfo and ExecutorInfo the workloads and the core send.
"""
from scheduler.mesos_json.agents import agent_url, agent_view, agent_views_from_state, value_of
from scheduler.mesos_json.launch import (command_info, container_info, executor_info, task_info,
                                         task_reference, uri_info, volume_info)

__all__ = [
    "agent_url", "agent_view", "agent_views_from_state", "command_info", "container_info",
    "executor_info", "task_info", "task_reference", "uri_info", "value_of", "volume_info",
]
