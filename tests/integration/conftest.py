"""The integration tier uses the shared cluster fixtures of tests/conftest.py, and every
test in it is held to the stable-serving invariant (tests/invariants.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _stable_invariant(request: pytest.FixtureRequest) -> None:
    if "api" in request.fixturenames:
        request.getfixturevalue("stable_kept")
