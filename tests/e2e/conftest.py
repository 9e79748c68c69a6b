"""E2e tier wiring: the real node and its image, and data planes that always stop.

The cluster fixtures (``kubeconfig``, ``api``, ``namespace``) come from tests/conftest.py.
The scenarios run on real pods (``realplane``: e2e/realplane.py, the real node of
SLIPWAY_REAL_NODE=1); they are skipped without the real node, and under CI=true with
SLIPWAY_REAL_NODE=1 a missing node fails them. ``dataplane`` is the simulated plane
(e2e/dataplane.py) that test_dataplane.py still tests. A plane starts processes (Prometheus,
load, model servers); the factory stops every one it made when the test ends, pass or fail,
and a failed test's report carries what the plane saw, since its temp files are gone by the
time anyone reads it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2e.dataplane import DataPlane
from e2e.realplane import RealNode, RealPlane, import_image, real_node
from kubernetes import client

from e2e import gateway

MakeDataPlane = Callable[..., DataPlane]
MakeRealPlane = Callable[..., RealPlane]
_PLANES = pytest.StashKey[list[tuple[DataPlane | RealPlane, list[str]]]]()
REAL_NODE = os.environ.get("SLIPWAY_REAL_NODE") == "1"
MUST_RUN = REAL_NODE and os.environ.get("CI") == "true"


@pytest.fixture(autouse=True)
def _stable_invariant(request: pytest.FixtureRequest) -> None:
    """Every e2e scenario is held to the stable-serving invariant (tests/invariants.py)."""
    request.getfixturevalue("stable_kept")


@pytest.fixture(scope="session")
def node(api: client.ApiClient) -> RealNode:
    """The real node, or a skip (a failure under CI=true with SLIPWAY_REAL_NODE=1)."""
    why = "real node not enabled: run with SLIPWAY_REAL_NODE=1 (as root) for real pods"
    found = real_node(api) if REAL_NODE else None
    if REAL_NODE and found is None:
        why = "the cluster has no node labelled slipway.dev/node=real"
    if found is None:
        if MUST_RUN:
            pytest.fail(f"CI=true and SLIPWAY_REAL_NODE=1, but {why}")
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def envoy_gateway(kubeconfig: str, node: RealNode) -> Iterator[gateway.GatewayProcess]:
    """The one Envoy Gateway of this machine (e2e/gateway.py), shared by a module's tests."""
    with gateway.shared(kubeconfig) as process:
        yield process


@pytest.fixture(scope="session")
def image(node: RealNode) -> str:
    """The model-server image, built from the current sources (cached) and imported."""
    return import_image()


@pytest.fixture
def realplane(
    request: pytest.FixtureRequest,
    kubeconfig: str,
    namespace: str,
    prometheus_binary: str,
    node: RealNode,
) -> Iterator[MakeRealPlane]:
    """``realplane(namespace=None, **RealPlane kwargs)`` starts Prometheus finding the pods
    of a namespace (default: the test's); ``plane.serve()`` then sends the load through the
    model's Service. All are stopped at teardown, before the namespace is deleted."""
    planes = request.node.stash.setdefault(_PLANES, [])

    def make(target_namespace: str | None = None, **kwargs: Any) -> RealPlane:
        plane = RealPlane(
            prometheus_binary, kubeconfig, target_namespace or namespace, node, **kwargs
        )
        planes.append((plane, []))
        return plane.start()

    try:
        yield make
    finally:
        for plane, _ in planes:
            plane.stop()


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
    none: list[tuple[DataPlane | RealPlane, list[str]]] = []
    planes = item.stash.get(_PLANES, none)
    for i, (plane, lines) in enumerate(planes):
        report.sections.append((f"data plane {i} log", "\n".join(lines[-80:])))
        report.sections.append((f"data plane {i} state", plane.describe()))
