"""Whole scenarios on a real cluster: real model-server pods behind real Services (realplane).

test_dataplane.py alone tests the simulated data plane (e2e/dataplane.py), which stays for
clusters without a real node (not root) and for `make bench` on kwok's fake nodes.
"""
