"""The real node (SLIPWAY_REAL_NODE=1): real containers, real probes, a real Service.

The model-server image is built locally (e2e/images/build.sh) and imported into the node's
containerd, never pulled. A Deployment of it on the real node must become Ready through its
readiness probe, answer from the host through its ClusterIP (kube-proxy, nftables mode), and
its logs must come back through `kubectl logs`. The last test tears the node down, checks the
machine is as it was (e2e/cluster/node-check-clean.sh), and brings the node back.

Skipped when the real node is not enabled, except under CI=true with SLIPWAY_REAL_NODE=1,
where a missing node fails the run instead of hiding it.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests.kube import ROOT, cluster_bin, wait_for

ENABLED = os.environ.get("SLIPWAY_REAL_NODE") == "1"
MUST_RUN = ENABLED and os.environ.get("CI") == "true"
NODE_LABEL = "slipway.dev/node=real"
CLUSTER = ROOT / "e2e" / "cluster"

pytestmark = pytest.mark.skipif(
    not ENABLED,
    reason="real node not enabled: run with SLIPWAY_REAL_NODE=1 (as root) to start it "
    "beside the kwok nodes",
)


def _missing(why: str) -> None:
    if MUST_RUN:
        pytest.fail(f"CI=true and SLIPWAY_REAL_NODE=1, but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def real_node(api: client.ApiClient) -> str:
    nodes = client.CoreV1Api(api).list_node(label_selector=NODE_LABEL).items
    if not nodes:
        _missing(f"the cluster has no node labelled {NODE_LABEL}")
    return str(nodes[0].metadata.name)


@pytest.fixture(scope="module")
def model_image(real_node: str) -> str:
    """Built from the current sources (cached) and imported into the node if new."""
    out = subprocess.run(
        ["bash", str(CLUSTER / "node-images.sh"), "model-server"],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def _deployment(image: str, node_label: str) -> dict[str, object]:
    key, value = node_label.split("=")
    return {
        "metadata": {"name": "server"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server"}},
                "spec": {
                    "nodeSelector": {key: value},
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "server",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "env": [
                                {"name": "MODEL_VERSION", "value": "v-real"},
                                {"name": "MODEL_RELEASE", "value": "real-node-test"},
                            ],
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def _programmed(cluster_ip: str) -> bool:
    """kube-proxy has put the ClusterIP into its nftables table."""
    out = subprocess.run(
        ["nft", "list", "table", "ip", "kube-proxy"], stdout=subprocess.PIPE, text=True
    ).stdout
    return cluster_ip in out


def _predict(cluster_ip: str) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(cluster_ip, 80, timeout=2)
    try:
        body = json.dumps({"features": [0.5, -0.2, 1.0]})
        conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


@pytest.fixture
def served(
    api: client.ApiClient, namespace: str, real_node: str, model_image: str
) -> Iterator[tuple[str, float]]:
    """The model server on the real node behind a ClusterIP Service; (cluster IP, seconds
    from create to Ready)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "server"},
            "spec": {
                "selector": {"app": "server"},
                "ports": [{"port": 80, "targetPort": "http"}],
            },
        },
    )
    start = time.monotonic()
    apps.create_namespaced_deployment(namespace, _deployment(model_image, NODE_LABEL))
    wait_for(
        lambda: (
            (apps.read_namespaced_deployment("server", namespace).status.ready_replicas or 0) >= 1
        ),
        timeout=90,
        what="the model server pod on the real node to be Ready (readiness probe)",
    )
    ready_s = time.monotonic() - start
    yield core.read_namespaced_service("server", namespace).spec.cluster_ip, ready_s


def test_model_server_pod_serves_through_cluster_ip(
    api: client.ApiClient, namespace: str, real_node: str, served: tuple[str, float]
) -> None:
    cluster_ip, ready_s = served
    core = client.CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector="app=server").items
    assert [p.spec.node_name for p in pods] == [real_node]
    assert pods[0].status.pod_ip, "a real pod has a real IP on the node's bridge"
    print(f"\nmodel-server pod Ready {ready_s:.1f}s after the Deployment was created")

    # Poll: the first request can come before kube-proxy has programmed the Service.
    wait_for(
        lambda: _programmed(cluster_ip), timeout=30, what=f"kube-proxy to program {cluster_ip}"
    )
    start = time.monotonic()

    def answered() -> tuple[int, dict[str, object]] | None:
        try:
            status, body = _predict(cluster_ip)
        except OSError:
            return None
        return (status, body) if status == 200 else None

    status, body = wait_for(answered, timeout=30, what=f"an answer from {cluster_ip}:80")
    print(f"first answer through the ClusterIP {time.monotonic() - start:.2f}s after programming")
    assert status == 200
    assert body.get("version") == "v-real", body


def test_kubectl_logs_reach_the_kubelet(
    kubeconfig: str, namespace: str, served: tuple[str, float]
) -> None:
    kubectl = str(cluster_bin() / "kubectl")
    logs = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "-n", namespace, "logs", "deploy/server"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert logs.returncode == 0, logs.stderr
    assert "listening on 0.0.0.0:8080" in logs.stdout


def test_pod_reaches_its_own_service_through_exec(
    kubeconfig: str, namespace: str, served: tuple[str, float]
) -> None:
    """`kubectl exec` works, and a pod reaches a ClusterIP (here its own: hairpin)."""
    cluster_ip, _ = served
    kubectl = str(cluster_bin() / "kubectl")
    exec_ = [kubectl, "--kubeconfig", kubeconfig, "-n", namespace, "exec", "deploy/server"]
    script = (
        "import urllib.request as u; "
        f"print(u.urlopen('http://{cluster_ip}/healthz', timeout=2).read().decode())"
    )

    def fetched() -> dict[str, object] | None:
        out = subprocess.run(
            [*exec_, "--", "python3", "-c", script],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return dict(json.loads(out.stdout)) if out.returncode == 0 else None

    body = wait_for(fetched, timeout=30, what=f"the pod to fetch http://{cluster_ip}/healthz")
    assert body["version"] == "v-real"


def test_teardown_leaves_the_machine_clean(
    request: pytest.FixtureRequest, api: client.ApiClient, real_node: str
) -> None:
    """node-down.sh, then node-check-clean.sh, then the node comes back for later tests."""
    if request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG"):
        pytest.skip("the real node belongs to the local cluster; a given cluster is not ours")
    down = subprocess.run(["bash", str(CLUSTER / "node-down.sh")], capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    check = subprocess.run(
        ["bash", str(CLUSTER / "node-check-clean.sh")], capture_output=True, text=True
    )
    up = subprocess.run(["bash", str(CLUSTER / "node-up.sh")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert up.returncode == 0, up.stderr
    core = client.CoreV1Api(api)
    wait_for(
        lambda: any(
            c.type == "Ready" and c.status == "True"
            for c in core.read_node(real_node).status.conditions or []
        ),
        timeout=60,
        what="the real node to be Ready again",
    )
