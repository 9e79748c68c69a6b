"""The operator's first vertical slice on a real cluster.

A ModelDeployment and its first ModelRelease converge to an available
Deployment behind the Service; a direct release replaces the stable; bad
releases leave the stable serving; deleting the ModelDeployment removes
every child.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c
from tests.cluster import CONVERGE_SECONDS, Cluster, model_body, release_body
from tests.kube import wait_for


def test_first_release_converges_and_becomes_stable(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    started = time.monotonic()
    k.create(c.PLURAL_DEPLOYMENT, model_body())
    k.create(c.PLURAL_RELEASE, release_body("fraud-v1", "v1"))

    status = k.wait_phase("fraud-v1", "Succeeded")
    elapsed = time.monotonic() - started
    assert elapsed < CONVERGE_SECONDS
    assert status["weight"] == 100
    assert status["observedGeneration"] == 1
    assert any(
        cond["type"] == "Ready" and cond["reason"] == "Promoted" for cond in status["conditions"]
    )

    deployment = k.deployments()["fraud-fraud-v1"]
    assert deployment.status.available_replicas == 2
    owner = deployment.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("ModelDeployment", "fraud", True)
    # GitOps trackers of the parent are never copied to children.
    assert "app.kubernetes.io/instance" not in (deployment.metadata.labels or {})
    assert "argocd.argoproj.io/tracking-id" not in (deployment.metadata.annotations or {})
    container = deployment.spec.template.spec.containers[0]
    env = {e.name: e.value for e in container.env}
    assert env[c.ENV_MODEL_URI] == "s3://models/fraud/v1"
    assert env[c.ENV_MODEL_VERSION] == "v1"
    labels = deployment.spec.template.metadata.labels
    assert labels[c.LABEL_RELEASE] == "fraud-v1" and labels["team"] == "risk"
    assert not any("stable" in v or "canary" in v for v in labels.values())

    service = k.core.read_namespaced_service("fraud", namespace)
    assert service.spec.selector == {c.LABEL_MODEL: "fraud"}
    discovery = client.DiscoveryV1Api(api)

    def ready_endpoints() -> list[Any]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=fraud"
        ).items
        return [ep for sl in slices for ep in sl.endpoints or [] if ep.conditions.ready]

    # The endpoint controller may publish one pod before the other: wait for both.
    wait_for(
        lambda: len(ready_endpoints()) == 2,
        timeout=CONVERGE_SECONDS,
        what="2 ready endpoints behind Service fraud",
    )

    model = wait_for(
        lambda: (s := k.model_status()).get("ready") == "2/2" and s,
        timeout=CONVERGE_SECONDS,
        what="ModelDeployment status ready 2/2",
    )
    assert model["stableRelease"] == "fraud-v1"
    assert model["stableVersion"] == "v1"
    assert model["history"][0]["provenance"]["datasetVersion"] == "2026-11-01"
    assert model["history"][0]["digest"] == "sha256:" + "ab" * 16
    assert not model.get("activeRelease")
    # No finalizers: deleting these never waits for the operator (GitOps prunes, namespaces).
    for plural, name in ((c.PLURAL_DEPLOYMENT, "fraud"), (c.PLURAL_RELEASE, "fraud-v1")):
        assert not k.get(plural, name)["metadata"].get("finalizers"), plural
    reasons = {e.reason for e in k.events_for("fraud-v1")}
    assert {"Progressing", "Succeeded"} <= reasons, reasons


def test_direct_release_replaces_stable_after_available(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(historyLimit=2), release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="direct", image="srv:2"))
    k.wait_phase("fraud-v2", "Succeeded")
    # The old stable is scaled to zero (kept for a fast rollback), not restarted.
    wait_for(
        lambda: k.deployments()["fraud-fraud-v1"].spec.replicas == 0,
        timeout=CONVERGE_SECONDS,
        what="the old stable Deployment to be scaled to zero",
    )
    new = k.deployments()["fraud-fraud-v2"]
    assert new.spec.template.spec.containers[0].image == "srv:2"
    model = k.model_status()
    assert model["stableRelease"] == "fraud-v2"
    assert [h["release"] for h in model["history"]] == ["fraud-v2", "fraud-v1"]

    # History stays bounded by historyLimit.
    k.create(c.PLURAL_RELEASE, release_body("fraud-v3", "v3", strategy="direct"))
    k.wait_phase("fraud-v3", "Succeeded")
    history = wait_for(
        lambda: (h := k.model_status()["history"])[0]["release"] == "fraud-v3" and h,
        timeout=CONVERGE_SECONDS,
        what="fraud-v3 at the head of the history",
    )
    assert [h["release"] for h in history] == ["fraud-v3", "fraud-v2"]
    # Only the previous stable is kept (at zero); older ones are pruned.
    wait_for(
        lambda: "fraud-fraud-v1" not in k.deployments(),
        timeout=CONVERGE_SECONDS,
        what="the Deployment of a release two promotions back to be pruned",
    )
    assert k.deployments()["fraud-fraud-v2"].spec.replicas == 0


def test_release_for_missing_deployment_waits_with_condition_and_event(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.create(c.PLURAL_RELEASE, release_body("ghost-v1", "v1", deployment="ghost"))
    status, ready = k.ready_condition("ghost-v1")
    assert status["phase"] == "Pending"
    assert ready["reason"] == "DeploymentNotFound"
    assert "'ghost' does not exist" in ready["message"]
    wait_for(
        lambda: any(
            e.reason == "DeploymentNotFound" or "ghost" in (e.message or "")
            for e in k.events_for("ghost-v1")
        ),
        timeout=CONVERGE_SECONDS,
        what="an Event on the orphan release",
    )
    # Once the ModelDeployment appears, the release proceeds by itself.
    k.create(c.PLURAL_DEPLOYMENT, model_body("ghost"))
    k.wait_phase("ghost-v1", "Succeeded")


def test_release_whose_pods_never_become_available_fails_and_stable_keeps_serving(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(progressDeadline="8s"), release_body("fraud-v1", "v1"))
    stable_pods = {
        p.metadata.name
        for p in k.core.list_namespaced_pod(
            namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v1"
        ).items
    }
    # Pods of later releases can no longer be scheduled: no node has this label.
    k.patch_model({"template": {"spec": {"nodeSelector": {"slipway.dev/none": "true"}}}})
    time.sleep(1)
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="direct"))
    status = k.wait_phase("fraud-v2", "Failed", timeout=60)
    ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
    assert ready["reason"] == "ProgressDeadlineExceeded"
    assert "'fraud-v1' keeps serving" in status["message"]
    wait_for(
        lambda: any(e.reason == "Failed" and e.type == "Warning" for e in k.events_for("fraud-v2")),
        timeout=CONVERGE_SECONDS,
        what="a Warning event on the failed release",
    )
    wait_for(
        lambda: "fraud-fraud-v2" not in k.deployments(),
        timeout=CONVERGE_SECONDS,
        what="the failed release's Deployment to be removed",
    )
    stable = k.deployments()["fraud-fraud-v1"]
    assert stable.status.ready_replicas == 2
    pods_now = {
        p.metadata.name
        for p in k.core.list_namespaced_pod(
            namespace, label_selector=f"{c.LABEL_RELEASE}=fraud-v1"
        ).items
    }
    assert pods_now == stable_pods, "the stable's pods must not be touched"
    assert k.model_status()["stableRelease"] == "fraud-v1"


def test_second_release_waits_while_one_is_in_flight(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.create(c.PLURAL_DEPLOYMENT, model_body())
    k.create(c.PLURAL_RELEASE, release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="direct"))
    pending = wait_for(
        lambda: (s := k.release_status("fraud-v2")).get("message") and s,
        timeout=CONVERGE_SECONDS,
        what="fraud-v2 to report why it waits",
    )
    if pending["phase"] == "Pending":
        assert "fraud-v1" in pending["message"]
        assert "fraud-fraud-v2" not in k.deployments()
    k.wait_phase("fraud-v1", "Succeeded")
    k.wait_phase("fraud-v2", "Succeeded")
    assert k.model_status()["stableRelease"] == "fraud-v2"


def test_a_strategy_the_router_cannot_do_is_refused_at_once_with_reason(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(), release_body("fraud-v1", "v1"))
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="shadow"))
    status = k.wait_phase("fraud-v2", "Failed")
    ready = next(x for x in status["conditions"] if x["type"] == "Ready")
    assert ready["reason"] == "RouterNotSupported"  # shadow needs mirroring; replicas can't
    assert "needs mirror" in status["message"]
    assert "'fraud-v1' keeps serving" in status["message"]
    assert "fraud-fraud-v2" not in k.deployments()
    # Refused, it holds nothing: the next release rolls out.
    k.create(c.PLURAL_RELEASE, release_body("fraud-v3", "v3", strategy="direct"))
    k.wait_phase("fraud-v3", "Succeeded")


def test_deleting_in_flight_release_removes_its_deployment(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(), release_body("fraud-v1", "v1"))
    # Never schedulable, so it stays in flight until deleted.
    k.patch_model(
        {
            "progressDeadline": "10m",
            "template": {"spec": {"nodeSelector": {"slipway.dev/none": "true"}}},
        }
    )
    time.sleep(1)
    k.create(c.PLURAL_RELEASE, release_body("fraud-v2", "v2", strategy="direct"))
    wait_for(
        lambda: "fraud-fraud-v2" in k.deployments(), timeout=CONVERGE_SECONDS, what="v2 Deployment"
    )
    k.custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, "fraud-v2"
    )
    wait_for(
        lambda: "fraud-fraud-v2" not in k.deployments(),
        timeout=CONVERGE_SECONDS,
        what="the deleted release's Deployment to be pruned",
    )
    assert k.deployments()["fraud-fraud-v1"].status.ready_replicas == 2
    wait_for(
        lambda: not k.model_status().get("activeRelease"),
        timeout=CONVERGE_SECONDS,
        what="slot freed",
    )


def test_deleting_stable_release_object_keeps_serving(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(), release_body("fraud-v1", "v1"))
    k.custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, "fraud-v1"
    )
    time.sleep(8)  # two model reconcile ticks
    assert k.deployments()["fraud-fraud-v1"].status.ready_replicas == 2


def test_deleting_model_deployment_removes_every_child(
    api: client.ApiClient, namespace: str, operator: Path
) -> None:
    k = Cluster(api, namespace)
    k.start_stable(model_body(), release_body("fraud-v1", "v1"))
    assert "fraud-fraud-v1" in k.deployments()
    k.custom.delete_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, c.PLURAL_DEPLOYMENT, "fraud", propagation_policy="Foreground"
    )

    def children_gone() -> bool:
        try:
            k.core.read_namespaced_service("fraud", namespace)
            return False
        except ApiException as error:
            if error.status != 404:
                raise
        pods = k.core.list_namespaced_pod(namespace, label_selector=f"{c.LABEL_MODEL}=fraud").items
        return not k.deployments() and not pods

    assert wait_for(
        children_gone, timeout=60, what="every child of the ModelDeployment to be deleted"
    )
