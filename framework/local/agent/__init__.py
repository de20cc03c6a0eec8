"""The embedded Mesos agent: executors, checkpoints and recovery, the files and debug APIs, nested containers."""
