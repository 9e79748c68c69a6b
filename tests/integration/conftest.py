"""The integration tier uses the shared cluster fixtures of tests/conftest.py."""
