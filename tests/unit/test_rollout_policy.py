"""Tier policies: what fails a release, what postpones it, and the defaults they give."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from slipway.api import conditions as cond
from slipway.api.models import ReleaseRecord, RolloutPolicy
from slipway.api.phases import Phase
from slipway.rollout.core import Situation
from slipway.rollout.gate import analysis_settings
from slipway.rollout.release import decide
from slipway.rollout.strategies.canary import steps_for
from tests.unit.factories import T0, deployment, model, release


def policy(**spec: Any) -> RolloutPolicy:
    return RolloutPolicy.model_validate({"metadata": {"name": "high"}, "spec": spec})


def tick(pol: RolloutPolicy, rel: Any = None, md: Any = None, now: Any = T0) -> Any:
    return decide(
        Situation(
            release=rel or release(strategy="canary"),
            model=md or model(stable="fraud-v1", tier="high"),
            siblings=(),
            deployments={"fraud-v1": deployment("fraud-v1", 2)},
            now=now,
            policy=pol,
        )
    )


def reason(decision: Any) -> str:
    return next(c.reason for c in decision.status.conditions if c.type == cond.READY)


def test_disallowed_strategy_fails_with_the_allowed_ones() -> None:
    decision = tick(policy(allowedStrategies=["canary"]), release(strategy="direct"))
    assert decision.status.phase == Phase.FAILED
    assert reason(decision) == cond.POLICY_VIOLATION
    assert "'direct' is not allowed for tier 'high' (allowed: canary)" in decision.status.message
    assert decision.actions == []


def test_first_release_is_not_held_to_the_strategy_rule() -> None:
    decision = tick(
        policy(allowedStrategies=["canary"]), release(strategy="direct"), model(tier="high")
    )
    assert decision.status.phase == Phase.PROGRESSING


def test_missing_provenance_fails_naming_the_fields() -> None:
    pol = policy(requiredProvenance=["datasetVersion", "digest"])
    decision = tick(pol, release(strategy="canary", provenance={"codeVersion": "abc"}))
    assert decision.status.phase == Phase.FAILED
    assert "datasetVersion, digest" in decision.status.message


def test_present_provenance_passes() -> None:
    pol = policy(requiredProvenance=["datasetVersion"])
    decision = tick(pol, release(strategy="canary", provenance={"datasetVersion": "2026-10"}))
    assert decision.status.phase == Phase.PROGRESSING


def test_freeze_window_postpones() -> None:
    window = {
        "start": (T0 - timedelta(hours=1)).isoformat(),
        "end": (T0 + timedelta(hours=1)).isoformat(),
        "reason": "Black Friday",
    }
    decision = tick(policy(freezeWindows=[window]))
    assert decision.status.phase == Phase.PENDING
    assert reason(decision) == cond.FREEZE_WINDOW
    assert "Black Friday" in decision.status.message
    after = tick(policy(freezeWindows=[window]), now=T0 + timedelta(hours=2))
    assert after.status.phase == Phase.PROGRESSING


def test_minimum_release_interval_postpones() -> None:
    md = model(stable="fraud-v1", tier="high")
    md.status.history = [
        ReleaseRecord(
            release="fraud-v1",
            version="v1",
            uri="u",
            strategy="canary",
            promoted_at=T0 - timedelta(hours=2),
        )
    ]
    decision = tick(policy(minReleaseInterval="24h"), md=md)
    assert decision.status.phase == Phase.PENDING
    assert reason(decision) == cond.RELEASE_INTERVAL
    later = tick(policy(minReleaseInterval="24h"), md=md, now=T0 + timedelta(hours=23))
    assert later.status.phase == Phase.PROGRESSING


def test_policy_is_not_rechecked_once_started() -> None:
    started = release(
        strategy="direct", status={"phase": "Progressing", "startedAt": T0.isoformat()}
    )
    decision = tick(policy(allowedStrategies=["canary"]), started)
    assert decision.status.phase == Phase.PROGRESSING


def test_policy_gives_default_steps_and_analysis() -> None:
    pol = policy(
        canary={"steps": [{"weight": 5}, {"weight": 10}]},
        analysis={"interval": "1m", "failureLimit": 0},
    )
    situation = Situation(
        release=release(), model=model(), siblings=(), deployments={}, now=T0, policy=pol
    )
    assert [s.weight for s in steps_for(situation, model())] == [5, 10]
    assert analysis_settings(model(), pol).interval == "1m"
    own = model(canary={"steps": [{"weight": 50}]}, analysis={"interval": "5s"})
    assert [s.weight for s in steps_for(situation, own)] == [50]
    assert analysis_settings(own, pol).interval == "5s"


def test_approval_gate_holds_rather_than_skips() -> None:
    decision = tick(policy(approval={"required": True}))
    assert decision.status.phase == Phase.PENDING
    assert reason(decision) == cond.APPROVAL_REQUIRED


def test_required_shadow_on_a_router_that_cannot_mirror_is_refused_at_once() -> None:
    decision = tick(policy(requireShadow=True))
    assert decision.status.phase == Phase.FAILED
    assert reason(decision) == cond.ROUTER_NOT_SUPPORTED
    assert "a shadow phase needs mirror" in (decision.status.message or "")


def test_freeze_window_without_zone_is_utc() -> None:
    naive = {"start": "2026-01-01T11:00:00", "end": "2026-01-01T13:00:00"}
    decision = tick(policy(freezeWindows=[naive]))
    assert reason(decision) == cond.FREEZE_WINDOW


def test_required_shadow_gives_a_canary_a_shadow_phase_first() -> None:
    md = model(stable="fraud-v1", tier="high", router="istio", shadow=None)
    decision = tick(policy(requireShadow=True), md=md)
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.step == 0 and decision.status.step_label == "shadow"
    assert decision.status.desired_mirror_percent == 100  # the defaults of ShadowSpec


def test_required_shadow_refuses_a_direct_release_with_the_way_out() -> None:
    decision = tick(policy(requireShadow=True), rel=release(strategy="direct"))
    assert decision.status.phase == Phase.FAILED
    assert reason(decision) == cond.SHADOW_REQUIRED
    assert "use shadow, canary or blueGreen" in (decision.status.message or "")


def _limits(tier: dict[str, Any] | None, own: dict[str, Any] | None) -> Any:
    from slipway.rollout.gate import undecided_limits

    pol = policy(analysis=tier) if tier is not None else None
    md = model(stable="fraud-v1", tier="high", **({"analysis": own} if own is not None else {}))
    return undecided_limits(md, pol)


def test_undecided_limits_default_to_none() -> None:
    limits = _limits(None, None)
    assert (limits.weight, limits.longest, limits.tracked) == (None, None, False)


def test_tier_undecided_limits_apply_when_the_deployment_says_nothing() -> None:
    limits = _limits({"undecidedWeight": 5, "maxUndecided": "30m"}, {"interval": "5s"})
    assert (limits.weight, limits.longest) == (5, timedelta(minutes=30))


def test_deployment_may_only_make_undecided_limits_stricter() -> None:
    looser = _limits(
        {"undecidedWeight": 5, "maxUndecided": "30m"}, {"undecidedWeight": 20, "maxUndecided": "2h"}
    )
    assert (looser.weight, looser.longest) == (5, timedelta(minutes=30))
    stricter = _limits(
        {"undecidedWeight": 5, "maxUndecided": "30m"}, {"undecidedWeight": 1, "maxUndecided": "10m"}
    )
    assert (stricter.weight, stricter.longest) == (1, timedelta(minutes=10))


def test_deployment_may_add_undecided_limits_a_tier_lacks() -> None:
    limits = _limits({"interval": "30s"}, {"maxUndecided": "15m"})
    assert (limits.weight, limits.longest, limits.tracked) == (None, timedelta(minutes=15), True)


def test_undecided_weight_outside_1_to_99_is_refused() -> None:
    import pydantic
    import pytest

    for bad in (0, 100):
        with pytest.raises(pydantic.ValidationError, match="undecidedWeight"):
            policy(analysis={"undecidedWeight": bad})


def test_chart_tiers_bound_exposure_below_their_first_step() -> None:
    """The shipped tiers parse, and an undecidedWeight never exceeds the tier's first step
    (above it the setting could only raise a first step's weight, never lower it)."""
    from pathlib import Path

    import yaml

    values = yaml.safe_load(
        (Path(__file__).parents[2] / "charts" / "slipway" / "values.yaml").read_text()
    )
    bounded = 0
    for tier, spec in values["policies"].items():
        pol = RolloutPolicy.model_validate({"metadata": {"name": tier}, "spec": spec})
        analysis = pol.spec.analysis
        assert analysis is not None, tier
        if analysis.undecided_weight is not None:
            first = pol.spec.canary.steps[0].weight if pol.spec.canary else 25
            assert analysis.undecided_weight <= first, tier
        bounded += analysis.max_undecided is not None
    assert bounded == len(values["policies"])
