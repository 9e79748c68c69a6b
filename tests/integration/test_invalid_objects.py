"""Invalid objects are refused by the real API server, and each refusal names the field.

These rules live in the generated CRDs (OpenAPI schema and CEL), so this test
proves the models, the generator and the API server agree.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from slipway.api import constants as c

MODEL: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_DEPLOYMENT,
    "metadata": {"name": "fraud"},
    "spec": {
        "owner": {"name": "risk-team"},
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "server", "image": "srv:1"}]}},
        "canary": {"steps": [{"weight": 10, "pause": "30s"}, {"weight": 50}]},
        "analysis": {"interval": "30s"},
        "slos": [
            {"name": "latency", "query": "q", "threshold": {"max": 0.25}},
            {"name": "errors", "errorRate": {}, "threshold": {"max": 0.02, "maxIncrease": 0.5}},
            {"name": "accuracy", "ratio": {"better": "higher"}, "threshold": {"maxDecrease": 0.02}},
            {"name": "p95", "latency": {"quantile": 0.95}, "threshold": {"maxIncrease": 0.1}},
        ],
    },
}
RELEASE: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_RELEASE,
    "metadata": {"name": "fraud-v2"},
    "spec": {
        "deployment": "fraud",
        "model": {"uri": "s3://models/fraud/v2", "version": "v2", "digest": "sha256:0123abcd"},
        "strategy": "canary",
    },
}
POLICY: dict[str, Any] = {
    "apiVersion": c.API_VERSION,
    "kind": c.KIND_POLICY,
    "metadata": {"name": "it-invalid-policy"},
    "spec": {"allowedStrategies": ["canary"]},
}


def edit(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of base with the dotted path set to value (``...`` deletes it)."""
    body = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is ...:
        del node[leaf]
    elif leaf.isdigit():
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return body


# (case id, object, field that the message must name, a word the message must contain)
CASES = [
    ("missing owner", edit(MODEL, "spec.owner", ...), "spec.owner", "Required"),
    ("empty owner name", edit(MODEL, "spec.owner.name", ""), "spec.owner.name", ""),
    ("replicas wrong type", edit(MODEL, "spec.replicas", "two"), "spec.replicas", "integer"),
    ("port out of range", edit(MODEL, "spec.port", 70000), "spec.port", "65535"),
    ("unknown field", edit(MODEL, "spec.replicaz", 3), "spec.replicaz", "unknown field"),
    (
        "decreasing steps",
        edit(MODEL, "spec.canary.steps", [{"weight": 50}, {"weight": 10}]),
        "spec.canary.steps",
        "strictly increase",
    ),
    (
        "repeated step weight",
        edit(MODEL, "spec.canary.steps", [{"weight": 20}, {"weight": 20}]),
        "spec.canary.steps",
        "strictly increase",
    ),
    (
        "weight 100 in a step (promotion is the 100 % step)",
        edit(MODEL, "spec.canary.steps", [{"weight": 100}]),
        "spec.canary.steps[0].weight",
        "less than or equal to 99",
    ),
    (
        "weight zero",
        edit(MODEL, "spec.canary.steps", [{"weight": 0}]),
        "spec.canary.steps[0].weight",
        "greater than or equal to 1",
    ),
    (
        "bad duration",
        edit(MODEL, "spec.analysis.interval", "5 minutes"),
        "spec.analysis.interval",
        "",
    ),
    ("unknown router", edit(MODEL, "spec.router", "nginx"), "spec.router", "Unsupported value"),
    (
        "empty threshold",
        edit(MODEL, "spec.slos.0.threshold", {}),
        "spec.slos[0].threshold",
        "at least one",
    ),
    (
        "min above max",
        edit(MODEL, "spec.slos.0.threshold", {"min": 2, "max": 1}),
        "spec.slos[0].threshold",
        "min must not exceed max",
    ),
    (
        "no containers",
        edit(MODEL, "spec.template.spec.containers", []),
        "spec.template.spec.containers",
        "",
    ),
    ("release without uri", edit(RELEASE, "spec.model.uri", ...), "spec.model.uri", "Required"),
    ("bad digest", edit(RELEASE, "spec.model.digest", "md5-nope"), "spec.model.digest", ""),
    (
        "unknown strategy",
        edit(RELEASE, "spec.strategy", "yolo"),
        "spec.strategy",
        "Unsupported value",
    ),
    ("uppercase deployment", edit(RELEASE, "spec.deployment", "Fraud"), "spec.deployment", ""),
    (
        "bad pause",
        edit(RELEASE, "spec.canary", {"steps": [{"weight": 10, "pause": "1d"}]}),
        "spec.canary.steps[0].pause",
        "should match",
    ),
    ("no strategies", edit(POLICY, "spec.allowedStrategies", []), "spec.allowedStrategies", ""),
    # Names the children need (issue 6): a model's name is its Service's name, a
    # release's name is a label value and part of its Deployment's name.
    ("long model name", edit(MODEL, "metadata.name", "f" * 64), "metadata.name", "63"),
    ("dotted model name", edit(MODEL, "metadata.name", "fraud.eu"), "metadata.name", ""),
    ("model name from a digit", edit(MODEL, "metadata.name", "1fraud"), "metadata.name", ""),
    ("64-char release name", edit(RELEASE, "metadata.name", "r" * 64), "metadata.name", "63"),
    ("dotted release name", edit(RELEASE, "metadata.name", "fraud.v2"), "metadata.name", ""),
    (
        "release naming an impossible model",
        edit(RELEASE, "spec.deployment", "1fraud"),
        "spec.deployment",
        "",
    ),
    ("empty image override", edit(RELEASE, "spec.image", ""), "spec.image", ""),
    (
        "SLO with a query and a type",
        edit(MODEL, "spec.slos.0.errorRate", {}),
        "spec.slos[0]",
        "exactly one of query, errorRate, ratio, latency",
    ),
    (
        "SLO with no kind",
        edit(MODEL, "spec.slos.0.query", ...),
        "spec.slos[0]",
        "exactly one of query, errorRate, ratio, latency",
    ),
    (
        "errors selector that is not label matchers",
        edit(
            MODEL,
            "spec.slos.0",
            {"name": "e", "errorRate": {"errors": "} or vector(1) #"}, "threshold": {"max": 1}},
        ),
        "spec.slos[0].errorRate.errors",
        "",
    ),
    (
        "latency quantile of 1",
        edit(
            MODEL,
            "spec.slos.0",
            {"name": "p", "latency": {"quantile": 1}, "threshold": {"max": 1}},
        ),
        "spec.slos[0].latency.quantile",
        "",
    ),
    (
        "false-rollback budget of one half",
        edit(MODEL, "spec.analysis", {"falseRollback": 0.5}),
        "spec.analysis.falseRollback",
        "",
    ),
    (
        "undecided weight of zero",
        edit(MODEL, "spec.analysis", {"undecidedWeight": 0}),
        "spec.analysis.undecidedWeight",
        "",
    ),
    (
        "tier undecided weight of 100",
        edit(POLICY, "spec.analysis", {"undecidedWeight": 100}),
        "spec.analysis.undecidedWeight",
        "",
    ),
    (
        "long maxUndecided",
        edit(MODEL, "spec.analysis", {"maxUndecided": "169h"}),
        "spec.analysis.maxUndecided",
        "168h",
    ),
    # Durations are bounded (168h), and one too large to parse is refused too.
    (
        "huge pause",
        edit(RELEASE, "spec.canary", {"steps": [{"weight": 10, "pause": "99999999999999h"}]}),
        "spec.canary.steps[0].pause",
        "168h",
    ),
    (
        "long interval",
        edit(MODEL, "spec.analysis.interval", "169h"),
        "spec.analysis.interval",
        "168h",
    ),
    (
        "long progress deadline",
        edit(MODEL, "spec.progressDeadline", "10081m"),
        "spec.progressDeadline",
        "168h",
    ),
    ("long SLO window", edit(MODEL, "spec.slos.0.window", "9999h"), "spec.slos[0].window", "168h"),
    # A sequential judge can never show agreement on every request: 1 could never pass.
    (
        "minAgreement 1 on the model",
        edit(MODEL, "spec.shadow", {"minAgreement": 1}),
        "spec.shadow.minAgreement",
        "less than 1",
    ),
    (
        "minAgreement 1 on the release",
        edit(RELEASE, "spec.shadow", {"minAgreement": 1.0}),
        "spec.shadow.minAgreement",
        "less than 1",
    ),
    (
        "long release interval",
        edit(POLICY, "spec.minReleaseInterval", "99999999999999h"),
        "spec.minReleaseInterval",
        "168h",
    ),
    (
        "unknown provenance field",
        edit(POLICY, "spec.requiredProvenance", ["astrology"]),
        "spec.requiredProvenance[0]",
        "Unsupported value",
    ),
]


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    custom = client.CustomObjectsApi(api)
    plural = {
        c.KIND_DEPLOYMENT: c.PLURAL_DEPLOYMENT,
        c.KIND_RELEASE: c.PLURAL_RELEASE,
        c.KIND_POLICY: c.PLURAL_POLICY,
    }[body["kind"]]
    if body["kind"] == c.KIND_POLICY:
        return custom.create_cluster_custom_object(
            c.GROUP, c.VERSION, plural, body, field_validation="Strict"
        )
    return custom.create_namespaced_custom_object(
        c.GROUP, c.VERSION, namespace, plural, body, field_validation="Strict"
    )


def test_valid_objects_are_accepted(api: client.ApiClient, namespace: str) -> None:
    """The bases are valid, so every refusal below is due to its one edit."""
    for body in (MODEL, RELEASE):
        create(api, namespace, body)
    policy = edit(POLICY, "metadata.name", f"it-valid-{namespace}")
    create(api, namespace, policy)
    client.CustomObjectsApi(api).delete_cluster_custom_object(
        c.GROUP, c.VERSION, c.PLURAL_POLICY, policy["metadata"]["name"]
    )


@pytest.mark.parametrize(
    ("body", "field", "word"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_invalid_object_is_refused_naming_the_field(
    api: client.ApiClient, namespace: str, body: dict[str, Any], field: str, word: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(api, namespace, body)
    message = refused.value.body or ""
    assert refused.value.status in (400, 422), message
    assert field in message, f"refusal does not name {field}: {message}"
    assert word in message, f"refusal does not say {word!r}: {message}"


def test_longest_names_and_durations_are_accepted(api: client.ApiClient, namespace: str) -> None:
    """The bounds are exactly the limits: 63-character names and 168h pass."""
    model_name = "m" + "x" * 61 + "1"
    model = edit(edit(MODEL, "metadata.name", model_name), "spec.progressDeadline", "168h")
    release = edit(RELEASE, "metadata.name", "9" + "y" * 61 + "9")
    release = edit(release, "spec.deployment", model_name)
    release = edit(release, "spec.canary", {"steps": [{"weight": 10, "pause": "604800000ms"}]})
    for body in (model, release):
        create(api, namespace, body)


def test_release_spec_is_immutable(api: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    create(api, namespace, RELEASE)
    changed = {"spec": {"model": {"uri": "s3://models/fraud/v3"}}}
    with pytest.raises(ApiException) as refused:
        custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL_RELEASE, "fraud-v2", changed
        )
    assert refused.value.status == 422
    assert "spec" in refused.value.body and "immutable" in refused.value.body


def test_at_least_twelve_cases() -> None:
    assert len(CASES) + 1 >= 12
