"""Whole scenarios on a real cluster, with the simulated data plane of e2e/dataplane.py."""
