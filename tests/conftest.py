"""Shared pytest wiring: where the real cluster comes from, and its fixtures.

The cluster fixtures are session-scoped and lazy: unit tests never start a
cluster; the integration and e2e tiers take one from ``--kubeconfig`` or
``KUBECONFIG`` if given, otherwise they start the local one once per run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.operator_process import OperatorProcess
from kubernetes import client

from tests import kube
from tests.invariants import StableGuard, tracebacks
from tests.prometheus.server import find_prometheus

SERVER = pytest.StashKey[str]()


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Say which API server the cluster tiers ran against, at the end of every run."""
    line = config.stash.get(SERVER, None)
    if line:
        terminalreporter.write_line(f"cluster tiers ran against the {line}")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=None,
        help="use this cluster (e.g. kind) instead of starting the local one",
    )


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    """The prometheus binary (installed from Debian if missing); skipped without one,
    except under CI=true, where that fails: CI must run the Prometheus tests."""
    path, why = find_prometheus()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Prometheus tests: {why}")
        pytest.skip(why)
    return path


@pytest.fixture(scope="session")
def kubeconfig(request: pytest.FixtureRequest) -> str:
    given = request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the cluster's progress shows as it goes
        path = str(given) if given else kube.local_cluster_kubeconfig()
        api = kube.api_client(path)
        version = kube.server_version(api)
        line = f"real Kubernetes API server {version} from {path}"
        print(f"\n{line}", flush=True)
        # Slipway's CRDs and the real Gateway API, Envoy Gateway and Istio ones (fetched
        # from the Go module proxy on first use: its progress shows too).
        began = time.monotonic()
        names = kube.install_crds(api)
        print(f"{len(names)} CRDs Established in {time.monotonic() - began:.1f}s", flush=True)
    request.config.stash[SERVER] = line
    return path


@pytest.fixture(scope="session")
def api(kubeconfig: str) -> client.ApiClient:
    return kube.api_client(kubeconfig)


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    with kube.namespace(api) as name:
        yield name


@pytest.fixture(scope="session")
def operator(kubeconfig: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The operator as a subprocess (`slipway run`), watching the test namespaces."""
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(kubeconfig, [f"{kube.TEST_PREFIX}-*"], log_path).start()
    yield log_path
    # Let the operator release its finalizers in the namespaces being deleted.
    core = client.CoreV1Api(kube.api_client(kubeconfig))
    try:
        kube.wait_for(
            lambda: (
                not [
                    ns
                    for ns in core.list_namespace(label_selector="slipway.dev/test=true").items
                    if ns.status.phase == "Terminating"
                    and ns.metadata.name.startswith(kube.TEST_PREFIX)
                ]
            ),
            timeout=30,
            what="test namespaces to finish terminating",
        )
    except AssertionError as error:
        print(f"warning: {error}", file=sys.stderr)
    process.stop()


@pytest.fixture(autouse=True)
def no_operator_tracebacks() -> Iterator[None]:
    """Every test fails if any operator process logged a traceback while it ran."""
    sizes = {log: log.stat().st_size for log in OperatorProcess.logs if log.exists()}
    yield
    found = [
        f"{log}: {line}"
        for log in OperatorProcess.logs
        for line in tracebacks(log, sizes.get(log, 0))
    ]
    if found:
        pytest.fail("the operator logged tracebacks:\n" + "\n".join(found), pytrace=False)


@pytest.fixture(scope="session")
def stable_guard(api: client.ApiClient) -> Iterator[StableGuard]:
    """Watches, for the whole run, that no stable release's Deployment is deleted or
    scaled to zero while it is the stable (tests/invariants.py)."""
    guard = StableGuard(api, ["slipway-"]).start()
    yield guard
    guard.stop()


@pytest.fixture
def stable_kept(stable_guard: StableGuard) -> Iterator[StableGuard]:
    """The test fails if the stable invariant was broken while it ran."""
    before = len(stable_guard.violations)
    yield stable_guard
    time.sleep(0.5)  # let the guard judge the last events of the test
    broken = stable_guard.violations[before:]
    if broken:
        pytest.fail("the stable release lost its Deployment:\n" + "\n".join(broken), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "operator" in getattr(item, "fixturenames", ()):
        log_path: Path = item.funcargs.get("operator")  # type: ignore[attr-defined]
        if log_path and log_path.exists():
            report.sections.append(("operator log (tail)", log_path.read_text()[-6000:]))
