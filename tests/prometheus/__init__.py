"""Helpers that run a real Prometheus on 127.0.0.1 for tests."""
