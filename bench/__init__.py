"""Benchmarks: each prints machine-readable JSON, comparing against a baseline in the same run."""
