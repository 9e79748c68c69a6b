"""Shared pytest options: where the real cluster comes from."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="use this cluster (e.g. kind) instead of starting the local one",
    )
