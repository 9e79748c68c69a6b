"""Deleted objects stop their work; racing releases never both start; a re-created
ModelDeployment is never acted on with its predecessor's state. All on the real API server.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from e2e.operator_process import OperatorProcess, scrape, total
from kubernetes import client, watch

from slipway.api import constants as c
from tests import kube
from tests.cluster import Cluster, model_body, release_body
from tests.kube import wait_for
from tests.prometheus.server import free_port

QUIET_SECONDS = 60
SAME_SECOND_TRIALS = 20
SLOW_CANARY = {"steps": [{"weight": 50, "pause": "1h"}]}


def gone(read: Any) -> bool:
    try:
        read()
    except client.exceptions.ApiException as error:
        return error.status == 404
    return False


def test_recreated_model_keeps_serving_when_its_stable_release_object_is_pruned(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(), release_body("fraud-v1", "v1"))
    k.custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL_DEPLOYMENT, "fraud", propagation_policy="Background"
    )
    wait_for(
        lambda: gone(lambda: k.get(c.PLURAL_DEPLOYMENT, "fraud")),
        timeout=30,
        what="the ModelDeployment to be deleted",
    )
    # An Argo CD re-sync or a restore: the same name again, then a new release, then a prune.
    k.create(c.PLURAL_DEPLOYMENT, model_body())
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2"))
    k.wait_phase("fraud-v2", "Succeeded")
    assert k.model_status()["stableRelease"] == "fraud-v2"
    k.custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, "fraud-v2"
    )
    time.sleep(8)  # many chances to act wrongly: every event of the prune has been handled
    serving = k.apps.read_namespaced_deployment("fraud-fraud-v2", namespace)
    assert serving.spec.replicas == 2 and serving.status.ready_replicas == 2
    status = k.model_status()
    assert status["stableRelease"] == "fraud-v2"
    serving_condition = next(x for x in status["conditions"] if x["type"] == "StableServing")
    assert serving_condition["status"] == "True", serving_condition
    pruned = [e.message for e in k.events_for("fraud") if e.reason == "Pruned"]
    assert not any("fraud-fraud-v2" in (m or "") for m in pruned), pruned


@pytest.fixture
def quiet_namespaces(api: client.ApiClient) -> Iterator[list[str]]:
    """Four namespaces the shared operator does not watch (this test runs its own)."""
    with ExitStack() as stack:
        yield [stack.enter_context(kube.namespace(api, prefix="slipway-quiet")) for _ in range(4)]


def test_deleted_objects_get_no_more_work(
    api: client.ApiClient, kubeconfig: str, quiet_namespaces: list[str], tmp_path: Path
) -> None:
    deleted_model, deleted_namespace, deleted_release, foreground = quiet_namespaces
    port = free_port()
    log = tmp_path / "operator.log"
    op = OperatorProcess(kubeconfig, quiet_namespaces, log, metrics_port=port).start()
    try:
        clusters = [Cluster(api, ns) for ns in quiet_namespaces]
        for k in clusters:
            k.start_stable(
                model_body(replicas=2, canary=SLOW_CANARY), release_body("fraud-v1", "v1")
            )
        in_flight = clusters[2]
        in_flight.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="canary"))
        wait_for(
            lambda: in_flight.release_status("fraud-v2").get("weight") == 50,
            timeout=30,
            what="fraud-v2 at 50 %",
        )

        clusters[0].custom.delete_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            deleted_model,
            c.PLURAL_DEPLOYMENT,
            "fraud",
            propagation_policy="Background",
        )
        client.CoreV1Api(api).delete_namespace(deleted_namespace, propagation_policy="Background")
        # Foreground: the ModelDeployment lingers, being deleted, until its children are gone.
        clusters[3].custom.delete_namespaced_custom_object(
            c.GROUP,
            c.VERSION,
            foreground,
            c.PLURAL_DEPLOYMENT,
            "fraud",
            propagation_policy="Foreground",
        )
        in_flight.custom.delete_namespaced_custom_object(
            c.GROUP, c.VERSION, deleted_release, c.PLURAL_RELEASE, "fraud-v2"
        )
        # The in-flight release's leftovers are put back: its Deployment goes, the stable is whole.
        wait_for(
            lambda: (
                "fraud-fraud-v2" not in in_flight.deployments()
                and in_flight.deployments()["fraud-fraud-v1"].spec.replicas == 2
            ),
            timeout=30,
            what="the deleted candidate pruned and the stable at full size",
        )
        wait_for(
            lambda: gone(lambda: clusters[0].core.read_namespaced_service("fraud", deleted_model)),
            timeout=30,
            what="the deleted ModelDeployment's Service to be garbage-collected",
        )
        wait_for(
            lambda: gone(lambda: clusters[3].get(c.PLURAL_DEPLOYMENT, "fraud")),
            timeout=60,
            what="the foreground deletion to finish",
        )
        time.sleep(5)  # the last events of the deletions are handled
        before, log_offset = scrape(port), log.stat().st_size
        time.sleep(QUIET_SECONDS)
        after = scrape(port)
    finally:
        op.stop()
    grown = {
        k: after[k] - before.get(k, 0)
        for k in after
        if k.startswith("slipway_kube_writes_total{") and after[k] != before.get(k, 0)
    }
    passes = total(after, "slipway_reconciles_total") - total(before, "slipway_reconciles_total")
    print(
        f"over {QUIET_SECONDS}s after the deletions: {sum(grown.values()):.0f} writes, "
        f"{passes:.0f} passes: {grown or 'none'}"
    )
    # Nothing at all for the objects that are gone.
    for gone_ns in (deleted_model, deleted_namespace, foreground):
        mine = {k: v for k, v in grown.items() if f'namespace="{gone_ns}"' in k}
        assert not mine, f"writes for deleted objects in {gone_ns}: {mine}"
    # The surviving model may report its own pods' readiness (its status), nothing else:
    # nothing touches the deleted release or any child.
    survivor = {
        k: v
        for k, v in grown.items()
        if f'namespace="{deleted_release}"' in k and "modeldeployments-status" not in k
    }
    assert not survivor, f"writes after the in-flight release was deleted: {survivor}"
    noise = [
        line
        for line in log.read_text()[log_offset:].splitlines()
        if "ERROR" in line or "WARNING" in line or "Traceback" in line
    ]
    assert not noise, noise
    # The surviving model still serves its stable, untouched.
    assert in_flight.model_status()["stableRelease"] == "fraud-v1"


class PhaseRecorder:
    """Every ModelRelease phase and every candidate Deployment size, as the watch saw them."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom, self.apps, self.ns = (
            client.CustomObjectsApi(api),
            client.AppsV1Api(api),
            namespace,
        )
        self.phases: dict[str, str] = {}
        self.most_in_flight = 0
        self.scaled: dict[str, int] = {}
        self.most_candidates = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._releases, daemon=True),
            threading.Thread(target=self._deployments, daemon=True),
        ]

    def __enter__(self) -> PhaseRecorder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _releases(self) -> None:
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                self.custom.list_namespaced_custom_object,
                c.GROUP,
                c.VERSION,
                self.ns,
                c.PLURAL_RELEASE,
                timeout_seconds=2,
            ):
                obj = event["object"]
                name = obj["metadata"]["name"]
                if event["type"] == "DELETED":
                    self.phases.pop(name, None)
                else:
                    self.phases[name] = (obj.get("status") or {}).get("phase") or "Pending"
                flying = [n for n, p in self.phases.items() if p in ("Progressing", "Paused")]
                self.most_in_flight = max(self.most_in_flight, len(flying))

    def _deployments(self) -> None:
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                self.apps.list_namespaced_deployment, self.ns, timeout_seconds=2
            ):
                dep = event["object"]
                name = dep.metadata.name
                if event["type"] == "DELETED" or dep.metadata.deletion_timestamp:
                    self.scaled.pop(name, None)
                else:
                    self.scaled[name] = dep.spec.replicas or 0
                candidates = [n for n, r in self.scaled.items() if r > 0 and n != "fraud-fraud-v1"]
                self.most_candidates = max(self.most_candidates, len(candidates))


def test_releases_created_in_the_same_second_never_both_start(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(replicas=4, canary=SLOW_CANARY), release_body("fraud-v1", "v1"))
    bodies = [
        release_body(f"r{trial}-{side}", f"v{trial}{side}", strategy="canary")
        for trial in range(SAME_SECOND_TRIALS)
        for side in "ab"
    ]
    with PhaseRecorder(api, namespace) as seen:
        for trial in range(SAME_SECOND_TRIALS):
            pair = bodies[2 * trial : 2 * trial + 2]
            threads = [threading.Thread(target=k.create, args=(c.PLURAL_RELEASE, b)) for b in pair]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            names = [b["metadata"]["name"] for b in pair]
            (winner,) = wait_for(  # a tuple: wait_for takes a bare string for "not yet"
                lambda names=names: [  # type: ignore[misc]
                    n for n in names if k.release_status(n).get("weight") == 50
                ],
                timeout=30,
                what=f"one of {names} at 50 %",
            )
            loser = next(n for n in names if n != winner)
            assert k.release_status(loser).get("phase") in (None, "Pending")
            # The loser first, so it never inherits the slot while the winner is pruned.
            for name in (loser, winner):
                k.custom.delete_namespaced_custom_object(
                    c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, name
                )
                wait_for(
                    lambda n=name: gone(lambda: k.get(c.PLURAL_RELEASE, n)),  # type: ignore[misc]
                    timeout=30,
                    what=f"release {name} deleted",
                )
            wait_for(
                lambda: (
                    set(k.deployments()) == {"fraud-fraud-v1"}
                    and k.deployments()["fraud-fraud-v1"].spec.replicas == 4
                ),
                timeout=30,
                what="the candidates pruned and the stable whole again",
            )
    assert seen.most_in_flight == 1, f"{seen.most_in_flight} releases were in flight at once"
    assert seen.most_candidates == 1, f"{seen.most_candidates} candidate Deployments at once"


def test_a_pod_template_the_api_server_refuses_fails_the_release_with_its_words(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    bad = model_body()
    # The CRD passes pod fields through; only the Deployment's own validation sees this.
    bad["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "2"},
        "limits": {"cpu": "1"},
    }
    k.create(c.PLURAL_DEPLOYMENT, bad)
    k.create(c.PLURAL_RELEASE, release_body("fraud-v1", "v1"))
    status = k.wait_phase("fraud-v1", "Failed")
    assert "refused" in status["message"] and "resources.requests" in status["message"], status
    ready = next(x for x in status["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "ChildRefused"
    assert not k.deployments()
    warnings = [e for e in k.events_for("fraud-v1") if e.type == "Warning"]
    assert any("resources.requests" in (e.message or "") for e in warnings)


def test_a_model_that_cannot_build_its_children_says_so_then_recovers_when_fixed(
    api: client.ApiClient, namespace: str, operator: Path, kubeconfig: str
) -> None:
    k = Cluster(api, namespace)
    k.create(c.PLURAL_DEPLOYMENT, model_body(container="sidecar"))  # no such container
    k.create(c.PLURAL_RELEASE, release_body("fraud-v1", "v1"))
    status, ready = k.ready_condition("fraud-v1")
    assert status["phase"] == "Pending" and ready["reason"] == "InvalidSpec", status
    assert "spec.container 'sidecar'" in status["message"]
    wait_for(
        lambda: "spec.container 'sidecar'" in (k.model_status().get("message") or ""),
        timeout=30,
        what="the ModelDeployment's message to name spec.container",
    )
    kubectl = str(kube.cluster_bin() / "kubectl")
    table = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "-n", namespace, "get", "modeldeployments"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    header, row = table.splitlines()[:2]
    assert "SERVING" in header and "MESSAGE" in header, header
    assert "spec.container 'sidecar'" in row, row

    k.patch_model({"container": "server"})
    k.wait_phase("fraud-v1", "Succeeded")
    serving = wait_for(
        lambda: (s := k.model_status()).get("ready") == "2/2" and s,
        timeout=30,
        what="the stable ready",
    )
    assert "message" not in serving, serving
    table = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "-n", namespace, "get", "modeldeployments"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert " True " in table.splitlines()[1], table
