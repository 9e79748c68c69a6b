"""A real-pod data plane: the model server as pods on the real node, traffic through the Service.

e2e/dataplane.py simulates what kwok pods cannot do. With the real node on
(SLIPWAY_REAL_NODE=1, e2e/cluster/node-up.sh) nothing needs simulating, and this module
supplies the three pieces a canary on real pods needs, so that every claim about traffic is
what kube-proxy and the kubelet actually did:

- ``pod_template``: the ModelDeployment's pod template running the locally built
  model-server image (imagePullPolicy Never) on the real node, with readiness and liveness
  probes on ``/healthz``. The operator injects ``SLIPWAY_MODEL_VERSION`` and
  ``SLIPWAY_RELEASE`` into each release's pods; a small shell launcher in the template turns
  them into the server's ``--version``/``--release`` and applies the faults the template
  names for that release (the template is shared by every release of a model, so the faults
  are a table keyed by release name, not per-pod env).
- ``PodPrometheus``: Debian's Prometheus discovering the pods from our API server (with the
  test kubeconfig's credentials) and scraping their IPs on the node's bridge, relabelled to
  the labels the SLOs select (``namespace``, ``release``). Debian builds Prometheus without
  ``kubernetes_sd_configs``, so ``PodDiscovery`` serves the pod list to ``http_sd_configs``
  under the same ``__meta_kubernetes_*`` names and the relabelling is what a kubernetes_sd job
  would use. Only pods of one namespace on the real node whose IP is in the node's pod
  network are kept, so nothing is ever dialled elsewhere.
- ``ServiceLoad``: requests to the Service's ClusterIP from the host (kube-proxy, nftables),
  a new connection per request so kube-proxy picks an endpoint each time; each answer is
  attributed to the version that served it (the ``/predict`` body says; after an error the
  same connection asks ``/healthz``). It refuses an address kube-proxy has not programmed.

``hang``/``resume`` stop and continue a pod's server process from the host (SIGSTOP): a
hung server fails its readiness probe and must leave the Service's endpoints.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from kubernetes import client, config
from tests.prometheus.server import PrometheusServer

REPO: Final = Path(__file__).resolve().parents[1]
CLUSTER: Final = REPO / "e2e" / "cluster"
MODEL_SERVER_DIR: Final = REPO / "examples" / "model-server"
if str(MODEL_SERVER_DIR) not in sys.path:
    sys.path.insert(0, str(MODEL_SERVER_DIR))
from model_server import DEFAULT_SEED, heldout_seed, make_dataset  # noqa: E402

NODE_LABEL: Final = ("slipway.dev", "node", "real")
NODE_SELECTOR: Final = {"slipway.dev/node": "real"}
POD_LABEL_RELEASE: Final = "slipway.dev/release"
SERVER_ENTRY: Final = "/app/model_server.py"  # where the image puts the server
NO_ANSWER: Final = "no-answer"
SAMPLES: Final = 2048
PRESTOP_S: Final = 2  # seconds a terminating pod keeps serving while kube-proxy drops it


@dataclass(frozen=True)
class Faults:
    """Fault knobs of one release's servers (examples/model-server/README.md)."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    accuracy_drop: float = 0.0
    predictions_bytes: int = 0
    """``GET /predictions`` answers this many bytes (no Content-Length)."""
    predictions_trickle_bps: float = 0.0
    """``GET /predictions`` answers at this many bytes per second."""

    def env(self) -> dict[str, str]:
        return {
            "INJECT_LATENCY_MS": f"{self.latency_ms:g}",
            "INJECT_ERROR_RATE": f"{self.error_rate:g}",
            "INJECT_ACCURACY_DROP": f"{self.accuracy_drop:g}",
            "INJECT_PREDICTIONS_BYTES": str(self.predictions_bytes),
            "INJECT_PREDICTIONS_TRICKLE_BPS": f"{self.predictions_trickle_bps:g}",
        }


@dataclass(frozen=True)
class RealNode:
    """The real node: its name and the /24 its pods get addresses from (its bridge)."""

    name: str
    pod_network: ipaddress.IPv4Network


def real_node(api: client.ApiClient) -> RealNode | None:
    """The cluster's real node (label slipway.dev/node=real), or None."""
    nodes = client.CoreV1Api(api).list_node(label_selector="slipway.dev/node=real").items
    if not nodes:
        return None
    node = nodes[0]
    internal = next(a.address for a in node.status.addresses if a.type == "InternalIP")
    # node-lib.sh: the bridge's address (the node's InternalIP) is .1 of the pod /24.
    network = ipaddress.IPv4Network(f"{internal}/24", strict=False)
    return RealNode(str(node.metadata.name), network)


def import_image() -> str:
    """The model-server image ref, built from the current sources (cached) and imported."""
    out = subprocess.run(
        ["bash", str(CLUSTER / "node-images.sh"), "model-server"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def launcher(faults: Mapping[str, Faults]) -> str:
    """The container's shell command: faults by release name, then exec the server."""
    cases = "".join(
        f"  {shlex.quote(release)}) export "
        + " ".join(f"{k}={shlex.quote(v)}" for k, v in f.env().items())
        + " ;;\n"
        for release, f in sorted(faults.items())
    )
    faulted = f'case "$SLIPWAY_RELEASE" in\n{cases}esac\n' if cases else ""
    return (
        faulted + f"exec python3 {SERVER_ENTRY} "
        '--version "$SLIPWAY_MODEL_VERSION" --release "$SLIPWAY_RELEASE"\n'
    )


def pod_template(
    image: str, faults: Mapping[str, Faults] | None = None, port: int = 8080
) -> dict[str, Any]:
    """A ModelDeployment pod template running the real model server on the real node."""
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "timeoutSeconds": 1}
    return {
        "metadata": {"labels": {"team": "risk"}},
        "spec": {
            "nodeSelector": dict(NODE_SELECTOR),
            # Drain: a terminating pod leaves the endpoints at once, but kube-proxy needs a
            # moment to drop it; the preStop sleep keeps it answering meanwhile, then SIGTERM
            # stops the server (it exits on SIGTERM), well inside the grace period.
            "terminationGracePeriodSeconds": 2 + PRESTOP_S + 3,
            "containers": [
                {
                    "name": "server",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c", launcher(faults or {})],
                    "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_S)]}}},
                    "env": [
                        {"name": "PORT", "value": str(port)},
                        {"name": "SEED", "value": str(DEFAULT_SEED)},
                    ],
                    "ports": [{"name": "http", "containerPort": port}],
                    # Out of the Service within about 3 s of not answering; two misses, so
                    # one probe slow on a busy machine does not flap a pod out and back
                    # (a canary step's observed split would count the flap).
                    "readinessProbe": {**probe, "periodSeconds": 1, "failureThreshold": 2},
                    # Restarted only after 30 s: the readiness test hangs a server for less.
                    "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                }
            ],
        },
    }


# --- Prometheus discovering the pods -------------------------------------------------------

# Debian's Prometheus (2.42) is built without kubernetes_sd_configs, so a small adapter on
# 127.0.0.1 lists the pods from our API server (the test kubeconfig's credentials) and serves
# them to http_sd_configs with the meta labels kubernetes_sd_configs (role pod) would give.
# The relabelling below is the one a kubernetes_sd job would use, unchanged.
_POD_JOB = """\
  - job_name: slipway-pods
    honor_labels: true
    http_sd_configs:
      - url: {url}
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http
        action: keep
      - source_labels: [__meta_kubernetes_pod_node_name]
        regex: {node}
        action: keep
      - source_labels: [__meta_kubernetes_pod_ip]
        regex: {pod_ip}
        action: keep
      - source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - source_labels: [__meta_kubernetes_pod_label_slipway_dev_release]
        target_label: release
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"""


def _meta_label(key: str) -> str:
    """A pod label key as kubernetes_sd names it (non [a-zA-Z0-9_] characters become _)."""
    return "__meta_kubernetes_pod_label_" + "".join(ch if ch.isalnum() else "_" for ch in key)


def pod_target_groups(pod_list: list[Any]) -> list[dict[str, Any]]:
    """http_sd target groups of running pods with an IP: one per container port, labelled
    with the ``__meta_kubernetes_*`` names of kubernetes_sd_configs (role pod)."""
    groups = []
    for pod in pod_list:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if not (status and status.pod_ip and status.phase == "Running"):
            continue
        ready = any(cd.type == "Ready" and cd.status == "True" for cd in status.conditions or [])
        base = {
            "__meta_kubernetes_namespace": meta.namespace,
            "__meta_kubernetes_pod_name": meta.name,
            "__meta_kubernetes_pod_ip": status.pod_ip,
            "__meta_kubernetes_pod_node_name": spec.node_name or "",
            "__meta_kubernetes_pod_ready": str(ready).lower(),
            **{_meta_label(k): v for k, v in (meta.labels or {}).items()},
        }
        for container in spec.containers:
            for port in container.ports or []:
                groups.append(
                    {
                        "targets": [f"{status.pod_ip}:{port.container_port}"],
                        "labels": {
                            **base,
                            "__meta_kubernetes_pod_container_name": container.name,
                            "__meta_kubernetes_pod_container_port_name": port.name or "",
                        },
                    }
                )
    return groups


class PodDiscovery:
    """http_sd endpoint on 127.0.0.1 listing one namespace's pods from the API server."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    pods = core.list_namespaced_pod(namespace, _request_timeout=5).items
                    body, code = json.dumps(pod_target_groups(pods)).encode(), 200
                except Exception as error:  # Prometheus keeps the last good list
                    body, code = str(error).encode(), 503
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/targets"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def pod_scrape_job(discovery_url: str, node: RealNode) -> str:
    """The scrape job (YAML under ``scrape_configs``) for pods on ``node``'s bridge."""
    prefix = str(node.pod_network.network_address).rsplit(".", 1)[0]
    return _POD_JOB.format(
        url=json.dumps(discovery_url),
        node=json.dumps(node.name.replace(".", "\\.")),
        pod_ip=json.dumps(prefix.replace(".", "\\.") + r"\.\d+"),
    )


class PodPrometheus:
    """Prometheus on 127.0.0.1 that finds one namespace's model-server pods by discovery."""

    def __init__(self, binary: str, kubeconfig: str, namespace: str, node: RealNode) -> None:
        self.discovery = PodDiscovery(kubeconfig, namespace)
        self.server = PrometheusServer(
            binary, [], extra_scrape_configs=pod_scrape_job(self.discovery.url, node)
        )
        self.url = self.server.url

    def start(self) -> PodPrometheus:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.discovery.close()

    def _get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.load(answer)["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._get("/api/v1/query", query=promql)["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """Active targets: their labels, scrape URL and health."""
        data = self._get("/api/v1/targets", state="active")
        active: list[dict[str, Any]] = data["activeTargets"]
        return active


# --- traffic through the Service -----------------------------------------------------------


def programmed(cluster_ip: str) -> bool:
    """kube-proxy has put ``cluster_ip`` into its nftables table on this machine."""
    out = subprocess.run(
        ["nft", "list", "table", "ip", "kube-proxy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout
    return f" {cluster_ip} " in out.replace(",", " ").replace("{", " ").replace("}", " ")


class ServiceLoad:
    """Requests to one ClusterIP at a steady rate; answers counted by the version that served.

    Each request opens its own connection (kube-proxy chooses an endpoint per connection),
    sends ``/predict`` and, when answered, the true label to ``/feedback`` on the same
    connection (same pod), so the accuracy counters are real. ``take()`` returns and resets
    the counts since the last call.
    """

    def __init__(
        self,
        cluster_ip: str,
        port: int,
        rps: float = 50.0,
        workers: int = 8,
        timeout: float = 2,
        host_header: str | None = None,
        feedback: bool = True,
    ) -> None:
        address = ipaddress.ip_address(cluster_ip)
        # A gateway's listener on the loopback, or a Service kube-proxy programmed here.
        if not address.is_loopback and (not address.is_private or not programmed(cluster_ip)):
            raise ValueError(f"{cluster_ip} is not a Service address kube-proxy programmed here")
        self.host, self.port, self.rps, self.timeout = cluster_ip, port, rps, timeout
        self.headers = {"Host": host_header} if host_header else {}
        # Through a gateway, send no /feedback: Envoy picks backends request by request
        # (its locality scheduler is deterministic), so a /predict + /feedback pair on one
        # connection would split by position, e.g. every /predict to one release at 50/50.
        self.feedback = feedback
        x, y = make_dataset(SAMPLES, heldout_seed(DEFAULT_SEED))
        self._samples = [(row.tolist(), int(label)) for row, label in zip(x, y, strict=True)]
        self._index = itertools.count()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()
        """Answers by version since start (``take()`` does not reset these)."""
        self.errors: Counter[str] = Counter()
        self._stop = threading.Event()
        self._tickets = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"load-{i}")
            for i in range(workers)
        ]
        self._pacer = threading.Thread(target=self._pace, daemon=True, name="load-pacer")

    def start(self) -> ServiceLoad:
        for thread in [*self._threads, self._pacer]:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for _ in self._threads:
            self._tickets.release()
        for thread in [*self._threads, self._pacer]:
            thread.join(timeout=self.timeout + 3)

    def take(self) -> Counter[str]:
        """Answers by version (``no-answer`` for none) since the last call."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts

    def _pace(self) -> None:
        start, sent = time.monotonic(), 0
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rps)
            for _ in range(due - sent):
                self._tickets.release()
            sent = max(sent, due)
            time.sleep(0.01)

    def _work(self) -> None:
        while True:
            self._tickets.acquire()
            if self._stop.is_set():
                return
            who = self._one()
            with self._lock:
                self._counts[who] += 1
                self.totals[who] += 1

    def _one(self) -> str:
        features, label = self._samples[next(self._index) % len(self._samples)]
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            status, body = _post(conn, "/predict", {"features": features}, self.headers)
            if status == 200:
                if self.feedback:
                    _post(conn, "/feedback", {"features": features, "label": label}, self.headers)
                return str(body["version"])
            self.errors[str(status)] += 1
            conn.request("GET", "/healthz", headers=self.headers)
            return str(json.loads(conn.getresponse().read())["version"])
        except (OSError, http.client.HTTPException, ValueError, KeyError) as error:
            self.errors[type(error).__name__] += 1
            return NO_ANSWER
        finally:
            conn.close()


def _post(
    conn: http.client.HTTPConnection,
    path: str,
    body: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    conn.request(
        "POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
    )
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read() or b"{}")


# --- a hung server -------------------------------------------------------------------------


def server_pid(pod: str) -> int:
    """Host PID of the model server in ``pod`` (its environment names the pod: HOSTNAME)."""
    want = f"HOSTNAME={pod}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if SERVER_ENTRY.encode() not in cmdline:
                continue
            if want in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except OSError:
            continue
    raise LookupError(f"no model-server process of pod {pod} on this machine")


def hang(pod: str) -> int:
    """SIGSTOP the pod's server: it stops answering, probes included. Returns its PID."""
    pid = server_pid(pod)
    os.kill(pid, signal.SIGSTOP)
    return pid


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


# --- the whole plane, for scenarios and the demo -------------------------------------------


class RealPlane:
    """Prometheus by discovery plus load through one model's Service, stopped together.

    What e2e/dataplane.py's ``DataPlane`` is to the fake nodes: ``start()`` starts the
    Prometheus (discovery keeps running across ``kill_prometheus``/``restart_prometheus``, the
    outage the operator must hold or roll back through); ``serve(model)`` waits for the
    model's Service and kube-proxy's rules, then sends the load; ``stop()`` stops both.
    """

    def __init__(
        self,
        prometheus_binary: str,
        kubeconfig: str,
        namespace: str,
        node: RealNode,
        rps: float = 60.0,
        workers: int = 16,
    ) -> None:
        self.namespace, self.rps, self.workers = namespace, rps, workers
        self.core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        self.prometheus = PodPrometheus(prometheus_binary, kubeconfig, namespace, node)
        self.load: ServiceLoad | None = None

    def start(self) -> RealPlane:
        self.prometheus.start()
        return self

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        self.prometheus.stop()

    def __enter__(self) -> RealPlane:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    def serve(self, model: str = "fraud", timeout: float = 60) -> ServiceLoad:
        """Start the load on ``model``'s Service once kube-proxy programmed its ClusterIP."""
        deadline = time.monotonic() + timeout
        ip = ""
        while time.monotonic() < deadline:
            try:
                ip = self.core.read_namespaced_service(model, self.namespace).spec.cluster_ip
            except client.exceptions.ApiException:
                ip = ""
            if ip and programmed(ip):
                self.load = ServiceLoad(ip, 8080, rps=self.rps, workers=self.workers).start()
                return self.load
            time.sleep(0.5)
        raise TimeoutError(f"Service {self.namespace}/{model} not programmed in {timeout}s ({ip})")

    def wait_scraped(self, release: str, pods: int, timeout: float = 30) -> None:
        """Until Prometheus scrapes ``pods`` pods of ``release`` (found by discovery)."""
        promql = f'up{{namespace="{self.namespace}",release="{release}"}} == 1'
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if len(self.prometheus.query(promql)) >= pods:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus did not scrape {pods} pods of {release} in {timeout}s")

    def kill_prometheus(self) -> None:
        """SIGKILL Prometheus: an outage, as the operator sees it."""
        self.prometheus.server.kill()

    def restart_prometheus(self) -> None:
        """Start Prometheus again on the same port, config and storage."""
        self.prometheus.server.start()

    def answered(self) -> Counter[str]:
        """Answers by version since the load started."""
        return Counter(self.load.totals) if self.load is not None else Counter()

    def describe(self) -> str:
        """Answers, errors and Prometheus's log tail, for failure reports."""
        totals, errors = (self.load.totals, self.load.errors) if self.load else ({}, {})
        lines = [
            f"answers {dict(totals)}; errors {dict(errors)}",
            "--- prometheus log:",
            self.prometheus.server.log_tail(),
        ]
        return "\n".join(lines)
