"""pymesos programs (run with the Python 3.10 venv, never imported by the test suite)."""
