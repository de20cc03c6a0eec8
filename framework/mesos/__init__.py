"""The Mesos v1 HTTP API: framing, messages, resources, drivers, detection."""
