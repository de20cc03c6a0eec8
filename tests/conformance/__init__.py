"""Conformance: third-party Mesos clients against the embedded cluster."""
