"""Fast rollback to an earlier release: requests, plans and their order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slipway.api import constants as c
from slipway.api.models import ModelDeployment, ReleaseRecord
from slipway.api.phases import Phase
from slipway.rollout.core import ApplyObject, RecordStable, ScaleDeployment, Situation
from slipway.rollout.model import decide_model
from slipway.rollout.release import decide
from slipway.rollout.rollback import pending_request, plan_rollback
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
    decision = decide_model(m, deps, {}, T0 + timedelta(minutes=1))
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
