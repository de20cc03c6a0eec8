"""Helpers that start real services for tests (ZooKeeper, the embedded cluster, a registry)."""
