"""The embedded Mesos master: its state, the agent protocol, the allocator, the scheduler and operator APIs."""
