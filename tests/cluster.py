"""Typed accessors for one test namespace, and the bodies the integration tests create.

Shared by the integration and e2e tiers so every scenario reads the cluster
the same way (through the real API server, never a mock).
"""

from __future__ import annotations

from typing import Any

from e2e.dataplane import ON_FAKE_NODES
from kubernetes import client

from slipway.api import constants as c
from tests.kube import wait_for

CONVERGE_SECONDS = 30


def model_body(name: str = "fraud", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_DEPLOYMENT,
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/instance": "gitops-app"},
            "annotations": {
                "argocd.argoproj.io/tracking-id": "app:slipway.dev/ModelDeployment:ns/x"
            },
        },
        "spec": {
            "owner": {"name": "risk-team", "contact": "#risk"},
            "tier": "low",
            "port": 8080,
            "replicas": 2,
            "progressDeadline": "30s",
            "template": {
                "metadata": {"labels": {"team": "risk"}},
                "spec": {
                    "containers": [
                        {"name": "server", "image": "registry.example/fraud-server:1.0"}
                    ],
                    **ON_FAKE_NODES,
                },
            },
            **spec,
        },
    }


def release_body(name: str, version: str, deployment: str = "fraud", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND_RELEASE,
        "metadata": {"name": name},
        "spec": {
            "deployment": deployment,
            "model": {
                "uri": f"s3://models/fraud/{version}",
                "version": version,
                "digest": "sha256:" + "ab" * 16,
            },
            "provenance": {"datasetVersion": "2026-11-01", "codeVersion": "git:abc123"},
            **spec,
        },
    }


class Cluster:
    """Small typed accessors for one test namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(c.GROUP, c.VERSION, self.ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.ns, plural, name
        )
        return obj

    def release_status(self, name: str) -> dict[str, Any]:
        return dict(self.get(c.PLURAL_RELEASE, name).get("status") or {})

    def model_status(self, name: str = "fraud") -> dict[str, Any]:
        return dict(self.get(c.PLURAL_DEPLOYMENT, name).get("status") or {})

    def deployments(self) -> dict[str, Any]:
        return {d.metadata.name: d for d in self.apps.list_namespaced_deployment(self.ns).items}

    def wait_phase(
        self, release: str, phase: str, timeout: float = CONVERGE_SECONDS
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.release_status(release)).get("phase") == phase and s,
            timeout=timeout,
            what=f"release {release} to reach phase {phase}",
        )

    def wait_phase_in(
        self, release: str, phases: set[str], timeout: float = CONVERGE_SECONDS
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.release_status(release)).get("phase") in phases and s,
            timeout=timeout,
            what=f"release {release} to reach one of {sorted(phases)}",
        )

    def patch_model(self, spec: dict[str, Any], name: str = "fraud") -> None:
        self.custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, self.ns, c.PLURAL_DEPLOYMENT, name, {"spec": spec}
        )

    def start_stable(self, model: dict[str, Any], release: dict[str, Any]) -> dict[str, Any]:
        """Create the ModelDeployment and its first release; wait until it is the stable."""
        self.create(c.PLURAL_DEPLOYMENT, model)
        self.create(c.PLURAL_RELEASE, release)
        return self.wait_phase(release["metadata"]["name"], "Succeeded")

    def ready_condition(self, release: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Wait until the release has conditions; its status and its Ready condition."""
        status = wait_for(
            lambda: (s := self.release_status(release)).get("conditions") and s,
            timeout=CONVERGE_SECONDS,
            what=f"a condition on release {release}",
        )
        ready = next(cond for cond in status["conditions"] if cond["type"] == "Ready")
        return status, ready

    def events_for(self, name: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(self.ns).items
            if e.involved_object.name == name
        ]
