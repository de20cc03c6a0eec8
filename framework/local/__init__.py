"""The embedded Mesos-compatible cluster: master, agent and the `up` supervisor."""
