"""Metronome-compatible batch jobs: specs, runs, retries, schedules, dependencies."""
