"""The dockyard framework scheduler: specs, placement, task lifecycle, jobs, services, API."""
