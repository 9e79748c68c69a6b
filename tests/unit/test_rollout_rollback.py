"""Fast rollback to an earlier release: requests, plans and their order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slipway.api import constants as c
from slipway.api.models import ModelDeployment, ReleaseRecord
from slipway.api.phases import Phase
from slipway.kube.children import build_release_service, build_service
from slipway.kube.fingerprint import service_fingerprint
from slipway.kube.observe import LiveRoute
from slipway.rollout.core import ApplyObject, RecordStable, ScaleDeployment, Situation
from slipway.rollout.model import decide_model
from slipway.rollout.release import decide
from slipway.rollout.rollback import pending_request, plan_rollback
from slipway.traffic import gatewayapi, istio
from slipway.traffic.routes import RoutePlan, route_body
from tests.unit.factories import T0, deployment, model, release

HISTORY = [
    {
        "release": "fraud-v3",
        "version": "v3",
        "uri": "s3://m/v3",
        "strategy": "canary",
        "promotedAt": T0.isoformat(),
    },
    {
        "release": "fraud-v2",
        "version": "v2",
        "uri": "s3://m/v2",
        "strategy": "canary",
        "promotedAt": T0.isoformat(),
        "image": "srv:2",
    },
    {
        "release": "fraud-v1",
        "version": "v1",
        "uri": "s3://m/v1",
        "strategy": "direct",
        "promotedAt": T0.isoformat(),
    },
]


def md(
    request: str | None, handled: str | None = None, active: str | None = None
) -> ModelDeployment:
    m = model(stable="fraud-v3", active=active, replicas=2)
    m.status.history = [ReleaseRecord.model_validate(h) for h in HISTORY]
    m.status.stable_version = "v3"
    m.status.handled_rollback = handled
    if request is not None:
        m.metadata.annotations = {c.ANNOTATION_ROLLBACK_TO: request}
    return m


UNPINNED = {"fraud": service_fingerprint(build_service(md(None), None))}
"""The model's Service read back as the model pass keeps it during a rollback."""


def test_no_annotation_no_request() -> None:
    assert pending_request(md(None)) is None


def test_handled_request_is_not_repeated() -> None:
    assert pending_request(md("fraud-v2@1", handled="fraud-v2@1")) is None
    assert pending_request(md("fraud-v2@2", handled="fraud-v2@1")) is not None


def test_empty_target_means_previous_stable() -> None:
    request = pending_request(md("@abc"))
    assert request is not None and request.target is None
    plan = plan_rollback(md("@abc"), request, {"fraud-v3": deployment("fraud-v3", 2, 2)}, T0)
    assert "fraud-v2" in plan.message


def test_unknown_target_is_refused_and_marked_handled() -> None:
    decision = decide_model(md("fraud-v9@1"), {}, {}, T0)
    assert decision.status.handled_rollback == "fraud-v9@1"
    assert "not in the history" in (decision.rollback_message or "")
    assert decision.actions == []


def test_rollback_waits_for_in_flight_release() -> None:
    m = md("fraud-v2@1", active="fraud-v4")
    plan = plan_rollback(m, pending_request(m), {}, T0)  # type: ignore[arg-type]
    assert plan.actions == [] and "waiting for 'fraud-v4'" in plan.message


def test_missing_target_deployment_is_rebuilt_from_history() -> None:
    m = md("fraud-v2@1")
    plan = plan_rollback(m, pending_request(m), {"fraud-v3": deployment("fraud-v3", 2, 2)}, T0)  # type: ignore[arg-type]
    [apply] = plan.actions
    assert isinstance(apply, ApplyObject)
    body: dict[str, Any] = apply.body
    assert body["metadata"]["name"] == "fraud-fraud-v2"
    assert body["spec"]["replicas"] == 2
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "srv:2"
    assert {"name": c.ENV_MODEL_URI, "value": "s3://m/v2"} in container["env"]


def test_target_kept_at_zero_is_scaled_up() -> None:
    m = md("fraud-v2@1")
    deps = {"fraud-v3": deployment("fraud-v3", 2, 2), "fraud-v2": deployment("fraud-v2", 0, 0)}
    plan = plan_rollback(m, pending_request(m), deps, T0)  # type: ignore[arg-type]
    assert plan.actions == [ScaleDeployment("fraud-fraud-v2", 2)]


def test_available_target_becomes_stable_then_old_stable_scales_down() -> None:
    m = md("fraud-v2@1")
    deps = {"fraud-v3": deployment("fraud-v3", 2, 2), "fraud-v2": deployment("fraud-v2", 2, 2)}
    # The Service read back selects every pod of the model: v2's pods are behind it.
    decision = decide_model(m, deps, {}, T0 + timedelta(minutes=1), services=UNPINNED)
    record, scale = decision.actions
    assert isinstance(record, RecordStable)
    assert record.record.release == "fraud-v2"
    assert record.record.note == "rollback from fraud-v3"
    assert record.record.promoted_at == T0 + timedelta(minutes=1)
    assert record.handled_rollback == "fraud-v2@1"
    assert scale == ScaleDeployment("fraud-fraud-v3", 0)
    assert decision.prune == [], "nothing is pruned while a rollback runs"


def test_in_flight_canary_is_rolled_back_when_rollback_requested() -> None:
    m = md("fraud-v2@1", active="fraud-v4")
    rel = release("fraud-v4", strategy="canary", status={"phase": "Progressing", "step": 1})
    decision = decide(
        Situation(
            release=rel,
            model=m,
            siblings=(),
            deployments={
                "fraud-v4": deployment("fraud-v4", 1, 1),
                "fraud-v3": deployment("fraud-v3", 1, 1),
            },
            now=T0,
        )
    )
    assert decision.status.phase == Phase.ROLLED_BACK
    assert ScaleDeployment("fraud-fraud-v4", 0) in decision.actions


def test_pending_release_waits_for_rollback() -> None:
    m = md("fraud-v2@1")
    decision = decide(
        Situation(
            release=release("fraud-v4", strategy="canary"),
            model=m,
            siblings=(),
            deployments={},
            now=T0,
        )
    )
    assert decision.status.phase == Phase.PENDING
    assert "rollback" in (decision.status.message or "")


# ---------------------------------------------------------------- the route first

UP = {"fraud-v3": deployment("fraud-v3", 2, 2), "fraud-v2": deployment("fraud-v2", 2, 2)}
LATER = T0 + timedelta(minutes=1)
GATEWAY = {"router": "gatewayAPI", "gatewayAPI": {"parentRefs": [{"name": "web"}]}}


def on(router: dict[str, Any]) -> ModelDeployment:
    m = md("fraud-v2@1")
    return m.model_copy(update={"spec": m.spec.model_copy(update=parse_spec(router))})


def parse_spec(router: dict[str, Any]) -> dict[str, Any]:
    spec = model(**router).spec
    return {"router": spec.router, "gateway_api": spec.gateway_api, "istio": spec.istio}


def http_route(m: ModelDeployment, to: str, generation: int, answered: int | None) -> LiveRoute:
    """The HTTPRoute sending everything to ``to`` at ``generation``; its Gateway answered
    ``answered`` (accepted), None: never; -1: refused this generation."""
    body = route_body(m, RoutePlan(((to, 100),)), gatewayapi.build)
    body["metadata"]["generation"] = generation
    if answered is not None:
        refused = answered < 0
        body["status"] = {
            "parents": [
                {
                    "parentRef": {"name": "web"},
                    "conditions": [
                        {
                            "type": "Accepted",
                            "status": "False" if refused else "True",
                            "reason": "NotAllowedByListeners" if refused else "Accepted",
                            "observedGeneration": generation if refused else answered,
                        }
                    ],
                }
            ]
        }
    return gatewayapi.observe(body)


def own_services(m: ModelDeployment) -> dict[str, str]:
    bodies = [build_release_service(m, r) for r in ("fraud-v2", "fraud-v3")]
    return {b["metadata"]["name"]: service_fingerprint(b) for b in bodies}


def test_on_replicas_the_old_stable_stays_whole_until_the_service_reaches_the_target() -> None:
    m = md("fraud-v2@1")
    pinned = {"fraud": service_fingerprint(build_service(m, "fraud-v3"))}
    for services in ({}, pinned):  # not read back yet, or still pinned to v3 (a blue-green)
        decision = decide_model(m, UP, {}, LATER, services=services)
        assert decision.actions == []
        assert decision.status.stable_release == "fraud-v3"
        assert "Service 'fraud' does not select 'fraud-v2''s pods yet" in (
            decision.rollback_message or ""
        )
        assert "'fraud-v3' and 'fraud-v2' both stay at full size" in (
            decision.rollback_message or ""
        )
        assert decision.status.serving is None  # the model pass unpins the Service


def test_on_gateway_api_the_route_moves_to_the_target_before_anything_shrinks() -> None:
    m = on(GATEWAY)
    services = own_services(m)
    at_v3 = http_route(m, "fraud-v3", generation=7, answered=7)
    first = decide_model(m, UP, {}, LATER, route=at_v3, services=services)
    [write] = first.actions
    assert isinstance(write, ApplyObject) and write.body["kind"] == "HTTPRoute"
    backends = write.body["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("fraud-fraud-v2", 100)]
    assert "HTTPRoute 'fraud' generation 7 does not have the new weights yet" in (
        first.rollback_message or ""
    )
    # Written, the Gateway silent on generation 8: nothing to write, both kept, why said.
    silent = http_route(m, "fraud-v2", generation=8, answered=7)
    for minutes in (2, 60):  # however long: the old stable is never scaled under it
        waiting = decide_model(
            m, UP, {}, T0 + timedelta(minutes=minutes), route=silent, services=services
        )
        assert waiting.actions == [] and waiting.prune == []
        message = waiting.rollback_message or ""
        assert "generation 8 has no status from its data plane yet" in message
        assert "Gateway web last answered generation 7" in message
        assert "'fraud-v3' and 'fraud-v2' both stay at full size" in message
    refused = http_route(m, "fraud-v2", generation=8, answered=-1)
    said = decide_model(m, UP, {}, LATER, route=refused, services=services).rollback_message
    assert "generation 8 is not accepted: Gateway web: Accepted=False" in (said or "")
    # Accepted: only now recorded, and only now the old stable goes.
    taken = http_route(m, "fraud-v2", generation=8, answered=8)
    done = decide_model(m, UP, {}, LATER, route=taken, services=services)
    record, scale = done.actions
    assert isinstance(record, RecordStable) and record.record.release == "fraud-v2"
    assert scale == ScaleDeployment("fraud-fraud-v3", 0)


def test_on_istio_the_virtualservice_read_back_with_the_target_is_enough() -> None:
    m = on({"router": "istio"})
    body = route_body(m, RoutePlan((("fraud-v2", 100),)), istio.build)
    done = decide_model(m, UP, {}, LATER, route=istio.observe(body), services=own_services(m))
    assert [type(a) for a in done.actions] == [RecordStable, ScaleDeployment]
