"""Test helpers that reach a real cluster: start or reuse it, install CRDs, wait.

The integration and e2e tiers take a cluster from ``--kubeconfig`` or
``KUBECONFIG`` when given; otherwise they start the local one built from
source (``e2e/cluster/up.sh``) once per run. Nothing here is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[1]
TEST_PREFIX = "slipway-it"
"""Namespaces the shared operator fixture watches (``slipway-it-*``)."""
T = TypeVar("T")


def local_cluster_kubeconfig() -> str:
    """Start (or reuse) the local cluster; its progress goes to stderr."""
    print("starting the local cluster (first run builds it from source)...", file=sys.stderr)
    result = subprocess.run(
        ["bash", str(ROOT / "e2e" / "cluster" / "up.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def cluster_bin() -> Path:
    """The folder of the cached cluster binaries (kubectl, helm, ...), built if missing."""
    result = subprocess.run(
        ["bash", str(ROOT / "e2e" / "cluster" / "build.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return Path(result.stdout.strip().splitlines()[-1])


def api_client(kubeconfig: str) -> client.ApiClient:
    new_client: Any = config.new_client_from_config  # untyped in the kubernetes package
    return cast(client.ApiClient, new_client(config_file=kubeconfig))


def traffic_crd_files() -> list[Path]:
    """The real traffic CRDs: Gateway API (standard channel) and Envoy Gateway's, and
    Istio's (versions pinned in e2e/gateway/versions.env). `gateway.sh` fetches them
    from the Go module proxy into ~/.cache/slipway once (a few seconds; progress on
    stderr) and prints where they are."""
    script = ROOT / "e2e" / "gateway" / "gateway.sh"
    out = {}
    for what in ("crds", "istio-crds"):
        run = subprocess.run(["bash", str(script), what], stdout=subprocess.PIPE, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"gateway.sh {what} failed ({run.returncode}): see its log above")
        out[what] = run.stdout.strip().splitlines()[-1]
    return [*sorted(Path(out["crds"]).glob("*.yaml")), Path(out["istio-crds"])]


def _crds_in(path: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader: 10x faster
    with path.open() as stream:
        return [
            doc
            for doc in yaml.load_all(stream, Loader=loader)
            if doc and doc.get("kind") == "CustomResourceDefinition"
        ]


def install_crds(api: client.ApiClient, traffic: bool = True) -> list[str]:
    """Server-side apply every CRD in crds/ and, with ``traffic``, the real Gateway API,
    Envoy Gateway and Istio CRDs, so the API server validates those objects itself;
    wait until each is Established."""
    ext: Any = client.ApiextensionsV1Api(api)  # raw answers below (_preload_content)
    files = sorted((ROOT / "crds").glob("*.yaml"))
    if traffic:
        files += traffic_crd_files()
    names = []
    for path in files:
        for body in _crds_in(path):
            name = body["metadata"]["name"]
            # The raw answer: deserializing a megabyte of schema into models takes seconds.
            ext.patch_custom_resource_definition(
                name,
                body,
                field_manager="slipway-tests",
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            ).read()
            names.append(name)
    for name in names:
        wait_for(
            lambda n=name: _established(ext, n),  # type: ignore[misc]
            timeout=60,
            what=f"CRD {name} Established",
        )
    return names


def _established(ext: Any, name: str) -> bool:
    crd = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).read())
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in crd.get("status", {}).get("conditions", [])
    )


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Poll until ``check`` returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiException as error:
            last = f"API error {error.status}: {error.reason}"
        if last and not isinstance(last, str):
            return cast(T, last)
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextmanager
def namespace(api: client.ApiClient, prefix: str = TEST_PREFIX) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (not waited for)."""
    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"slipway.dev/test": "true"})
        )
    )
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise


def server_version(api: client.ApiClient) -> str:
    info = client.VersionApi(api).get_code()
    return str(info.git_version)


def env_with_kubeconfig(kubeconfig: str) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": kubeconfig}
