"""Test helpers that reach a real cluster: start or reuse it, install CRDs, wait.

The integration and e2e tiers take a cluster from ``--kubeconfig`` or
``KUBECONFIG`` when given; otherwise they start the local one built from
source (``e2e/cluster/up.sh``) once per run. Nothing here is mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

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
    return config.new_client_from_config(config_file=kubeconfig)


def install_crds(api: client.ApiClient) -> list[str]:
    """Server-side apply every CRD in crds/ and wait until each is Established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        ext.patch_custom_resource_definition(
            name,
            body,
            field_manager="slipway-tests",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        names.append(name)
    for name in names:
        wait_for(
            lambda n=name: _established(ext, n),  # type: ignore[misc]
            timeout=30,
            what=f"CRD {name} Established",
        )
    return names


def _established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


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
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextmanager
def namespace(api: client.ApiClient, prefix: str = TEST_PREFIX) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (not waited for)."""
    core = client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"slipway.dev/test": "true"}}})
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
