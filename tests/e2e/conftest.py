"""E2e tier wiring: a real Prometheus binary, and data planes that always stop.

The cluster fixtures (``kubeconfig``, ``api``, ``namespace``) come from tests/conftest.py.
A data plane starts processes (model servers, Prometheus); the factory stops every one it
made when the test ends, pass or fail, and a failed test's report carries the data plane's
timeline and log tails, since its temp files are gone by the time anyone reads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e.dataplane import DataPlane

MakeDataPlane = Callable[..., DataPlane]
_PLANES = pytest.StashKey[list[tuple[DataPlane, list[str]]]]()


@pytest.fixture(autouse=True)
def _stable_invariant(request: pytest.FixtureRequest) -> None:
    """Every e2e scenario is held to the stable-serving invariant (tests/invariants.py)."""
    request.getfixturevalue("stable_kept")


@pytest.fixture
def dataplane(
    request: pytest.FixtureRequest, kubeconfig: str, namespace: str, prometheus_binary: str
) -> Iterator[MakeDataPlane]:
    """``dataplane(namespace=None, **DataPlane kwargs)`` starts a data plane (default: the
    test's namespace); all are stopped at teardown, before the namespace is deleted."""
    planes = request.node.stash.setdefault(_PLANES, [])
    began = time.monotonic()

    def make(target_namespace: str | None = None, **kwargs: Any) -> DataPlane:
        lines: list[str] = []
        if "log" not in kwargs:
            kwargs["log"] = lambda message: lines.append(
                f"{time.monotonic() - began:6.1f}s {message}"
            )
        plane = DataPlane(kubeconfig, target_namespace or namespace, prometheus_binary, **kwargs)
        planes.append((plane, lines))
        return plane.start()

    try:
        yield make
    finally:
        for plane, _ in planes:
            plane.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    none: list[tuple[DataPlane, list[str]]] = []
    planes = item.stash.get(_PLANES, none)
    for i, (plane, lines) in enumerate(planes):
        report.sections.append((f"data plane {i} log", "\n".join(lines[-80:])))
        report.sections.append((f"data plane {i} state", plane.describe()))
