"""Tests of the Mesos v1 HTTP API layer: framing, detection, drivers."""
