"""The scheduler's REST API: Metronome v1 (jobs), Marathon v2 (services), OpenAPI, metrics."""
