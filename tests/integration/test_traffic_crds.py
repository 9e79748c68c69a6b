"""The real traffic CRDs are installed: the API server serves Gateway API and Istio objects
and validates them itself.

The session fixture that installs Slipway's CRDs also installs Gateway API v1.6.1 (standard
channel), Envoy Gateway's and Istio's (istio.io/api v1.31.4) CRDs, from the Go module
proxy (tests/kube.py, e2e/gateway/gateway.sh), so the routers' objects are checked by the
same schemas a production cluster has.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

GATEWAY_API = ("gateway.networking.k8s.io", "v1")
ISTIO = ("networking.istio.io", "v1")


def http_route(weights: dict[str, int], mirror_percent: int | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "backendRefs": [{"name": name, "port": 8080, "weight": w} for name, w in weights.items()]
    }
    if mirror_percent is not None:
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {"name": "shadow", "port": 8080},
                    "percent": mirror_percent,
                },
            }
        ]
    return {
        "apiVersion": "/".join(GATEWAY_API),
        "kind": "HTTPRoute",
        "metadata": {"name": "model"},
        "spec": {"parentRefs": [{"name": "slipway"}], "rules": [rule]},
    }


def virtual_service(weights: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "/".join(ISTIO),
        "kind": "VirtualService",
        "metadata": {"name": "model"},
        "spec": {
            "hosts": ["model"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "model", "subset": name}, "weight": w}
                        for name, w in weights.items()
                    ],
                    "mirror": {"host": "model", "subset": "shadow"},
                    "mirrorPercentage": {"value": 50.0},
                }
            ],
        },
    }


def served(api: client.ApiClient, group: str, version: str) -> dict[str, Any]:
    """The resources the API server serves under group/version (its discovery document)."""
    listing = client.CustomObjectsApi(api).get_api_resources(group, version)
    return {r.name: r for r in listing.resources}


def create(
    api: client.ApiClient, namespace: str, gv: tuple[str, str], plural: str, body: Any
) -> Any:
    objects: Any = client.CustomObjectsApi(api)
    return objects.create_namespaced_custom_object(*gv, namespace, plural, body)


def refusal(
    api: client.ApiClient, namespace: str, gv: tuple[str, str], plural: str, body: Any
) -> ApiException:
    with pytest.raises(ApiException) as refused:
        create(api, namespace, gv, plural, body)
    return refused.value


def test_the_api_server_serves_gateway_api_and_istio_routes(api: client.ApiClient) -> None:
    gateway_api = served(api, *GATEWAY_API)
    assert {"httproutes", "gateways", "gatewayclasses", "referencegrants"} <= set(gateway_api)
    assert gateway_api["httproutes"].namespaced
    istio = served(api, *ISTIO)
    assert {"virtualservices", "destinationrules"} <= set(istio)
    assert istio["virtualservices"].namespaced
    # Envoy Gateway's own kinds, for the real data plane (e2e/gateway.py).
    assert {"envoyproxies", "backends", "envoypatchpolicies"} <= set(
        served(api, "gateway.envoyproxy.io", "v1alpha1")
    )


def test_valid_routes_are_stored_as_sent(api: client.ApiClient, namespace: str) -> None:
    route = create(
        api, namespace, GATEWAY_API, "httproutes", http_route({"stable": 75, "canary": 25}, 50)
    )
    rule = route["spec"]["rules"][0]
    assert [b["weight"] for b in rule["backendRefs"]] == [75, 25]
    assert rule["filters"][0]["requestMirror"]["percent"] == 50
    vs = create(
        api, namespace, ISTIO, "virtualservices", virtual_service({"stable": 90, "canary": 10})
    )
    assert [r["weight"] for r in vs["spec"]["http"][0]["route"]] == [90, 10]
    assert vs["spec"]["http"][0]["mirrorPercentage"] == {"value": 50.0}


@pytest.mark.parametrize(
    ("route", "field"),
    [
        (http_route({"stable": -1, "canary": 25}), "weight"),
        (http_route({"stable": 1_000_001}), "weight"),
        (http_route({"stable": 100}, mirror_percent=101), "percent"),
    ],
    ids=["negative-weight", "weight-too-large", "mirror-over-100"],
)
def test_an_invalid_httproute_is_refused_with_422(
    api: client.ApiClient, namespace: str, route: dict[str, Any], field: str
) -> None:
    error = refusal(api, namespace, GATEWAY_API, "httproutes", route)
    assert error.status == 422, error.body
    assert field in str(error.body), error.body


def test_a_mistyped_virtualservice_is_refused_with_422(
    api: client.ApiClient, namespace: str
) -> None:
    # Istio's CRD schema types every field; ranges (weights 0..100) are checked by
    # istiod's webhook, not by the schema, so a router must keep weights in range itself.
    bad = virtual_service({"stable": 90, "canary": 10})
    bad["spec"]["http"][0]["route"][0]["weight"] = "ninety"
    error = refusal(api, namespace, ISTIO, "virtualservices", bad)
    assert error.status == 422, error.body
    assert "weight" in str(error.body), error.body


def test_istio_weights_are_not_range_checked_by_the_schema(
    api: client.ApiClient, namespace: str
) -> None:
    """What the Istio router must check itself: the schema takes any int32 weight."""
    stored = create(
        api, namespace, ISTIO, "virtualservices", virtual_service({"stable": 150, "canary": -50})
    )
    assert [r["weight"] for r in stored["spec"]["http"][0]["route"]] == [150, -50]
