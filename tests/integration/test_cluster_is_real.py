"""The cluster under the tests is real: the scheduler, kwok nodes and the garbage collector work."""

from __future__ import annotations

from kubernetes import client

from tests.cluster import ON_FAKE_NODES
from tests.kube import wait_for


def test_deployment_gets_ready_pods(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "probe"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {
                    "metadata": {"labels": {"app": "probe"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "example.invalid/probe:1"}],
                        **ON_FAKE_NODES,
                    },
                },
            },
        },
    )
    ready = wait_for(
        lambda: (
            (apps.read_namespaced_deployment("probe", namespace).status.ready_replicas or 0) >= 2
        ),
        timeout=60,
        what="2 ready pods of Deployment probe",
    )
    assert ready
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=probe").items
    assert len(pods) == 2
    assert all(p.spec.node_name for p in pods), "pods must be scheduled onto (kwok) nodes"


def test_deleting_owner_garbage_collects_dependents(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}}
    )
    core.delete_namespaced_config_map("owner", namespace)
    gone = wait_for(
        lambda: (
            "dependent"
            not in {cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items}
        ),
        timeout=60,
        what="the garbage collector to delete the dependent ConfigMap",
    )
    assert gone


def test_rbac_is_enforced(api: client.ApiClient, namespace: str) -> None:
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "spec": {
                "user": "nobody@example.invalid",
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": "delete",
                    "resource": "deployments",
                    "group": "apps",
                },
            }
        }
    )
    assert review.status.allowed is False
