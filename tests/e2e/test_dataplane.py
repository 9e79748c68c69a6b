"""The simulated data plane follows the real cluster: ready pods in, measured traffic out.

The canary and fault scenarios run on real pods now (e2e/realplane.py); the simulated plane
stays where a real pod cannot serve: `make demo` on a machine without the real node (not
root: kubelet and containerd need it) and `make bench`, whose releases run on kwok's fake
nodes. Both rest on this: if the data plane did not send a release the share its
ready pods give it, or Prometheus did not see that release's faults under the labels the SLO
queries use, the e2e tier would test the harness instead of the operator. No operator runs
here: the test makes Slipway-labelled Deployments by hand and scales them itself, so only
the data plane is under test.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e.dataplane import ANNOTATION_ERROR_RATE, ON_FAKE_NODES, DataPlane
from kubernetes import client

from slipway.analysis.judges.queries import error_rate_queries
from slipway.api import constants as c
from slipway.kube.children import deployment_name
from tests.e2e.conftest import MakeDataPlane
from tests.kube import wait_for

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fraud"
STABLE, CANARY = "fraud-v1", "fraud-v2"
# spec.model.version of each release; Slipway's version label is a sanitised copy, and the
# data plane must label series with the spec's value, which SLO templates' {{version}} gets.
VERSIONS = {STABLE: "1", CANARY: "2+fix1"}
VERSION_LABELS = {STABLE: "1", CANARY: "2-fix1"}
RPS = 40.0


def _deployment(release: str, replicas: int) -> dict[str, Any]:
    """A release Deployment labelled as Slipway labels its children."""
    labels = {
        c.LABEL_MODEL: MODEL,
        c.LABEL_RELEASE: release,
        c.LABEL_VERSION: VERSION_LABELS[release],
    }
    return {
        "metadata": {
            "name": deployment_name(MODEL, release),
            "labels": {c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE, **labels},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {c.LABEL_MODEL: MODEL, c.LABEL_RELEASE: release}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "server", "image": "example.invalid/fraud:1"}],
                    **ON_FAKE_NODES,
                },
            },
        },
    }


def _bad_release() -> dict[str, Any]:
    """The canary's ModelRelease: only its fault annotation matters (no operator runs)."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_RELEASE,
        "metadata": {"name": CANARY, "annotations": {ANNOTATION_ERROR_RATE: "0.5"}},
        "spec": {
            "deployment": MODEL,
            "model": {"uri": "s3://models/fraud/2", "version": VERSIONS[CANARY]},
        },
    }


def _slo(name: str) -> dict[str, Any]:
    manifest = yaml.safe_load((ROOT / "examples" / "manifests" / "fraud-model.yaml").read_text())
    slo: dict[str, Any] = next(s for s in manifest["spec"]["slos"] if s["name"] == name)
    return slo


def _healthz(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        body: dict[str, Any] = json.loads(conn.getresponse().read())
        return body
    finally:
        conn.close()


def _value(plane: DataPlane, promql: str) -> float | None:
    result = plane.query(promql)
    return float(result[0]["value"][1]) if result else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_traffic_follows_ready_pods_and_faults_reach_prometheus(
    api: client.ApiClient, namespace: str, dataplane: MakeDataPlane
) -> None:
    apps = client.AppsV1Api(api)
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, _bad_release()
    )
    apps.create_namespaced_deployment(namespace, _deployment(STABLE, 3))
    apps.create_namespaced_deployment(namespace, _deployment(CANARY, 1))
    plane = dataplane(rps=RPS)  # starts while kwok makes the pods ready

    # Both releases are served by their own process, 3 ready pods to 1.
    wait_for(
        lambda: (
            plane.weights() == {STABLE: 75.0, CANARY: 25.0}
            and all(
                (view := plane.snapshot().release(r)) is not None and view.process == "serving"
                for r in (STABLE, CANARY)
            )
        ),
        timeout=45,
        what="both releases ready and served at 75/25",
    )
    snap = plane.snapshot()
    for release in (STABLE, CANARY):
        view = snap.release(release)
        assert view is not None and view.port is not None and view.pid is not None
        assert _healthz(view.port) == {
            "status": "ok",
            "version": VERSIONS[release],
            "release": release,
        }
    canary_view = snap.release(CANARY)
    assert canary_view is not None and canary_view.knobs.error_rate == 0.5
    canary_pid = canary_view.pid
    assert canary_pid is not None

    # Traffic splits 75/25 by ready pods, at about RPS in total.
    before = plane.counts()
    window = 5.0
    time.sleep(window)
    after = plane.counts()
    sent = {r: after[r].sent - (before[r].sent if r in before else 0) for r in (STABLE, CANARY)}
    total = sum(sent.values())
    assert 0.7 * RPS * window <= total <= 1.2 * RPS * window, sent
    assert sent[CANARY] / total == pytest.approx(0.25, abs=0.03), sent
    for release in (STABLE, CANARY):
        assert after[release].shed == 0
        assert after[release].unserved == (before[release].unserved if release in before else 0)
    assert after[STABLE].errors == 0
    assert after[CANARY].predict.get(500, 0) > 0

    # Prometheus has both releases' series, each with one namespace/model/release/version.
    selector = f'model_requests_total{{namespace="{namespace}"}}'

    def both_releases() -> list[dict[str, Any]]:
        found = plane.query(selector)
        return found if {s["metric"].get("release") for s in found} == {STABLE, CANARY} else []

    series = wait_for(both_releases, timeout=15, what=f"{selector} for both releases")
    for s in series:
        labels = s["metric"]
        assert labels["namespace"] == namespace and labels["model"] == MODEL
        assert labels["version"] == VERSIONS[labels["release"]]
        assert not [k for k in labels if k.startswith("exported_")], labels

    # The demo's error-rate SLO, through the queries the operator builds for it, measures
    # the injected fault.
    spec = _slo("error-rate")["errorRate"]

    def counts(release: str, seconds: int = 10) -> tuple[float, float | None]:
        errors, requests = error_rate_queries(
            {"namespace": namespace, "release": release},
            seconds,
            spec["requests"],
            spec["errors"],
        )
        # No error series yet is zero errors (as the operator reads it).
        return _value(plane, errors) or 0.0, _value(plane, requests)

    wait_for(
        lambda: (counts(CANARY)[1] or 0) >= 40,
        timeout=20,
        what="40 canary requests in Prometheus",
    )
    canary_errors, canary_requests = counts(CANARY)
    stable_errors, stable_requests = counts(STABLE)
    assert canary_requests and stable_requests
    assert canary_errors / canary_requests == pytest.approx(0.5, abs=0.15)
    assert stable_errors == 0.0

    # Scaling the canary to 0 ready pods stops its traffic at once and its process soon.
    apps.patch_namespaced_deployment_scale(
        deployment_name(MODEL, CANARY), namespace, {"spec": {"replicas": 0}}
    )
    wait_for(
        lambda: plane.weights() == {STABLE: 100.0, CANARY: 0.0},
        timeout=30,
        what="the canary's ready pods to go",
    )
    time.sleep(0.5)  # requests already in flight finish (they take milliseconds)
    canary_sent = plane.counts()[CANARY].sent
    stable_sent = plane.counts()[STABLE].sent
    time.sleep(1.5)
    assert plane.counts()[CANARY].sent == canary_sent
    assert plane.counts()[STABLE].sent > stable_sent
    wait_for(
        lambda: (view := plane.snapshot().release(CANARY)) and view.process == "stopped",
        timeout=15,
        what="the canary's model server to stop",
    )
    assert not _alive(canary_pid)
    stable = plane.snapshot().release(STABLE)
    assert stable is not None and stable.process == "serving" and stable.weight == 100.0
