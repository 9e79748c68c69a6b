"""Shadow agreement's source on real pods: predictions read through the API server's pod proxy.

``KubePredictionSource`` (slipway.analysis.agreement) crosses the Kubernetes API, so it is
tested here against the real API server and real model-server pods on the real node
(SLIPWAY_REAL_NODE=1): requests carrying ``x-request-id`` go to the Service's ClusterIP
(kube-proxy picks the pod), and the source must return exactly those ids with the predictions
the answers carried, merged over every Ready pod, none sent before ``since``. Then the whole
check: the same ids sent to a stable and to a candidate (what a gateway's mirror does), and
``measure_agreement`` passes an identical candidate and fails one that flips predictions.
Also what the operator needs from RBAC (``list`` pods, ``get`` pods/proxy): without the proxy
permission the source fails naming the pod.

Skipped without the real node; under CI=true with SLIPWAY_REAL_NODE=1 a missing node fails.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from e2e.realplane import Faults, RealNode, pod_template, programmed
from kubernetes import client

from slipway.analysis.agreement import (
    KubePredictionSource,
    PredictionSourceError,
    measure_agreement,
    pod_port,
)
from slipway.api import constants as c
from slipway.api.phases import Verdict
from tests.kube import wait_for

ENABLED = os.environ.get("SLIPWAY_REAL_NODE") == "1"
MODEL = "agree"
PORT = 8080

pytestmark = pytest.mark.skipif(
    not ENABLED,
    reason="real node not enabled: run with SLIPWAY_REAL_NODE=1 (as root) for real pods",
)


def labels(release: str) -> dict[str, str]:
    return {c.LABEL_MODEL: MODEL, c.LABEL_RELEASE: release}


def start_release(
    api: client.ApiClient,
    namespace: str,
    image: str,
    release: str,
    replicas: int,
    faults: Faults | None = None,
) -> str:
    """A Deployment of the model server for ``release`` and a Service in front of it (named
    after the release); returns the Service's ClusterIP once its pods are Ready and kube-proxy
    has programmed it."""
    template = pod_template(image, {release: faults} if faults else None, port=PORT)
    template["metadata"]["labels"] |= labels(release)
    # What the operator injects into each release's pods (the launcher reads them).
    template["spec"]["containers"][0]["env"] += [
        {"name": c.ENV_MODEL_VERSION, "value": release},
        {"name": c.ENV_RELEASE, "value": release},
    ]
    client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": release, "labels": labels(release)},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels(release)},
                "template": template,
            },
        },
    )
    core = client.CoreV1Api(api)
    service = core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": release},
            "spec": {
                "selector": labels(release),
                "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
            },
        },
    )
    wait_for(
        lambda: len(ready_pods(api, namespace, release)) == replicas,
        timeout=120,
        what=f"{replicas} Ready pods of {release}",
    )
    ip = str(service.spec.cluster_ip)
    wait_for(
        lambda: ready_endpoints(api, namespace, release) == replicas,
        timeout=30,
        what=f"{replicas} ready endpoints of Service {release}",
    )
    wait_for(lambda: programmed(ip), timeout=30, what=f"kube-proxy to program {ip}")
    wait_for(lambda: healthy(ip), timeout=30, what=f"Service {release} at {ip} to answer")
    time.sleep(1)  # kube-proxy may have programmed some of the endpoints only
    return ip


def ready_endpoints(api: client.ApiClient, namespace: str, service: str) -> int:
    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    )
    return sum(1 for s in slices.items for e in s.endpoints or [] if e.conditions.ready)


def healthy(ip: str) -> bool:
    conn = http.client.HTTPConnection(ip, PORT, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def ready_pods(api: client.ApiClient, namespace: str, release: str) -> list[Any]:
    selector = ",".join(f"{k}={v}" for k, v in labels(release).items())
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if any(cd.type == "Ready" and cd.status == "True" for cd in p.status.conditions or [])
    ]


def predict(ip: str, body: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """One POST /predict on a new connection (kube-proxy picks the pod per connection)."""
    headers = {"Content-Type": "application/json"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    conn = http.client.HTTPConnection(ip, PORT, timeout=5)
    try:
        conn.request("POST", "/predict", json.dumps(body), headers)
        answer = conn.getresponse()
        payload: dict[str, Any] = json.loads(answer.read())
        assert answer.status == 200, payload
        return payload
    finally:
        conn.close()


def rows(seed: int, n: int) -> list[list[float]]:
    return [
        [((seed * 31 + i * 7) % 13 - 6) / 3.0, (i % 5 - 2) / 1.5, (i % 3) - 1.0] for i in range(n)
    ]


def expected_from(answer: dict[str, Any], request_id: str) -> dict[str, int]:
    if "predictions" in answer:
        return {f"{request_id}/{i}": int(p) for i, p in enumerate(answer["predictions"])}
    return {request_id: int(answer["prediction"])}


@pytest.fixture
def source(api: client.ApiClient) -> Iterator[KubePredictionSource]:
    yield KubePredictionSource(api)


def test_source_returns_exactly_the_requests_sent_with_their_answers(
    api: client.ApiClient, namespace: str, image: str, node: RealNode, source: KubePredictionSource
) -> None:
    began = time.monotonic()
    ip = start_release(api, namespace, image, "agree-v1", replicas=2)
    print(f"\n2 real pods Ready and the Service programmed in {time.monotonic() - began:.1f}s")

    # Before `since`: recorded by the pods, but not asked for.
    for i in range(5):
        predict(ip, {"features": [0.1 * i, 0.0, 0.0]}, f"early-{i}")
    time.sleep(1.1)
    since = time.time()
    time.sleep(0.05)

    expected: dict[str, int] = {}
    run = uuid.uuid4().hex[:8]
    for i in range(60):
        request_id = f"{run}-{i}"
        if i % 6 == 0:  # a batch: rows keyed <id>/<row>
            body: dict[str, Any] = {"instances": rows(i, 4)}
        else:
            body = {"features": rows(i, 1)[0]}
        expected |= expected_from(predict(ip, body, request_id), request_id)
        if i % 10 == 0:  # no header: answered, never recorded
            predict(ip, {"features": [1.0, 1.0, 1.0]}, None)
    assert len(expected) == 10 * 4 + 50 and set(expected.values()) == {0, 1}

    got = source.predictions(namespace, MODEL, "agree-v1", since)
    assert got == expected

    # Merged over both pods: each served some of them (kube-proxy picks per connection).
    pods = ready_pods(api, namespace, "agree-v1")
    per_pod = [source.pod_predictions(namespace, p.metadata.name, pod_port(p), since) for p in pods]
    print(f"answers per pod: {[len(e) for e in per_pod]}")
    assert len(per_pod) == 2 and all(per_pod)
    assert sorted(rid for entries in per_pod for rid, _, _ in entries) == sorted(expected)
    assert all(since <= t <= time.time() + 1 for entries in per_pod for _, _, t in entries)

    # Everything the pods recorded, early ones included; nothing from the future.
    everything = source.predictions(namespace, MODEL, "agree-v1", 0.0)
    assert set(everything) == set(expected) | {f"early-{i}" for i in range(5)}
    assert source.predictions(namespace, MODEL, "agree-v1", time.time() + 60) == {}

    # A release without pods is an error that says so, not an empty answer.
    with pytest.raises(PredictionSourceError, match="no Ready pod of release agree-v9"):
        source.predictions(namespace, MODEL, "agree-v9", since)


def test_measure_agreement_passes_an_identical_candidate_and_fails_a_flipping_one(
    api: client.ApiClient, namespace: str, image: str, node: RealNode, source: KubePredictionSource
) -> None:
    stable = start_release(api, namespace, image, "agree-v1", replicas=2)
    same = start_release(api, namespace, image, "agree-v2", replicas=1)
    flips = start_release(
        api, namespace, image, "agree-v3", replicas=1, faults=Faults(accuracy_drop=0.3)
    )
    since = time.time() - 0.5
    run = uuid.uuid4().hex[:8]
    for i in range(20):  # 20 batches of 50 rows, each sent to all three (a mirror's copies)
        request_id = f"{run}-{i}"
        body = {"instances": rows(i, 50)}
        for ip in (stable, same, flips):
            predict(ip, body, request_id)

    good = measure_agreement(source, namespace, MODEL, "agree-v1", "agree-v2", since, 0.95, 0.05)
    print(f"\nidentical: {good.verdict.value}: {good.reason}")
    assert good.verdict is Verdict.PASS and good.value == 1.0 and good.samples == 1000

    bad = measure_agreement(source, namespace, MODEL, "agree-v1", "agree-v3", since, 0.95, 0.05)
    print(f"flipping 30%: {bad.verdict.value}: {bad.reason}")
    assert bad.verdict is Verdict.FAIL and bad.samples == 1000
    assert bad.value is not None and 0.6 < bad.value < 0.8
    assert bad.upper is not None and bad.upper < 0.95

    # A candidate with no pods: Inconclusive, not gathering, and the reason says why.
    gone = measure_agreement(source, namespace, MODEL, "agree-v1", "agree-v4", since, 0.95, 0.05)
    assert gone.verdict is Verdict.INCONCLUSIVE and not gone.gathering
    assert "no Ready pod of release agree-v4" in gone.reason


def test_without_pods_proxy_permission_the_source_names_the_pod(
    api: client.ApiClient, kubeconfig: str, namespace: str, image: str, node: RealNode
) -> None:
    """What the operator's RBAC needs: ``list`` pods and ``get`` pods/proxy."""
    ip = start_release(api, namespace, image, "agree-v1", replicas=1)
    predict(ip, {"features": [1.0, 0.0, 0.0]}, "only")
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "reader"}})
    subject = [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]
    for name, rules in {
        "list-pods": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        "proxy-pods": [{"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]}],
    }.items():
        rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "list-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "list-pods",
            },
            "subjects": subject,
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    reader = client.ApiClient(as_token(api.configuration, token))
    pod = ready_pods(api, namespace, "agree-v1")[0].metadata.name

    with pytest.raises(PredictionSourceError) as refused:
        KubePredictionSource(reader).predictions(namespace, MODEL, "agree-v1", 0.0)
    print(f"\nwithout pods/proxy: {refused.value}")
    assert f"pod {namespace}/{pod} (port {PORT})" in str(refused.value)
    assert "HTTP 403" in str(refused.value) and "pods/proxy" in str(refused.value)

    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "proxy-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "proxy-pods",
            },
            "subjects": subject,
        },
    )

    def allowed() -> dict[str, int] | None:
        try:
            return KubePredictionSource(reader).predictions(namespace, MODEL, "agree-v1", 0.0)
        except PredictionSourceError:
            return None

    got = wait_for(allowed, timeout=10, what="the pods/proxy permission to take effect")
    assert list(got) == ["only"]


def as_token(admin: client.Configuration, token: str) -> client.Configuration:
    """The admin configuration's server and CA, authenticated by ``token`` instead."""
    configuration = client.Configuration()
    configuration.host = admin.host
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    configuration.verify_ssl = admin.verify_ssl
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return configuration
