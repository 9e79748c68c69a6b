"""The Helm chart renders, lints, and every object it renders is accepted by the real API server.

Server-side dry-run runs admission and schema validation (including the CRDs'
CEL rules for the default tier policies) without changing the cluster.
"""

from __future__ import annotations

import subprocess
from typing import Any

import yaml
from kubernetes import client, dynamic

from tests.kube import ROOT, cluster_bin

CHART = ROOT / "charts" / "slipway"


def helm(*args: str) -> str:
    result = subprocess.run(
        [str(cluster_bin() / "helm"), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def test_chart_lints() -> None:
    assert "0 chart(s) failed" in helm("lint", str(CHART))


def test_rendered_chart_is_accepted_by_the_api_server(
    api: client.ApiClient, namespace: str
) -> None:
    rendered = helm("template", "slipway", str(CHART), "--namespace", namespace)
    documents: list[dict[str, Any]] = [d for d in yaml.safe_load_all(rendered) if d]
    kinds = sorted({d["kind"] for d in documents})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "RolloutPolicy",
        "Service",
        "ServiceAccount",
    ]
    tiers = {d["metadata"]["name"] for d in documents if d["kind"] == "RolloutPolicy"}
    assert tiers == {"low", "medium", "high", "critical"}
    resources = dynamic.DynamicClient(api).resources
    for document in documents:
        resource = resources.get(api_version=document["apiVersion"], kind=document["kind"])
        resource.server_side_apply(
            body=document,
            name=document["metadata"]["name"],
            namespace=namespace if resource.namespaced else None,
            field_manager="slipway-chart-test",
            dry_run="All",
            force_conflicts=True,
        )


def test_chart_crds_are_the_generated_ones() -> None:
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_text() == path.read_text(), path.name


def test_operator_role_covers_what_the_operator_writes() -> None:
    rendered = helm("template", "slipway", str(CHART))
    role = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ClusterRole")
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    for needed in [
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "delete"),
        ("apps", "deployments/scale", "patch"),
        ("", "services", "patch"),
        ("slipway.dev", "modelreleases/status", "patch"),
        ("slipway.dev", "modeldeployments/status", "patch"),
        ("", "events", "create"),
    ]:
        assert needed in granted, needed
