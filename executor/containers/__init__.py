"""Layered containers: overlay roots, OCI bundles, runc/crun, cgroup limits, clean-up."""
