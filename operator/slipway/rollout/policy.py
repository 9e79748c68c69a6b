"""What a tier's RolloutPolicy forbids or postpones, judged before a release starts.

Violations a release can never cure (its spec is immutable: a strategy the
tier does not allow, provenance the tier requires but the release lacks)
fail it with the reason; rules that time cures (a change freeze, the
minimum interval between releases of one model) keep it Pending until then.
Settings the policy provides (steps, analysis) are defaults the
ModelDeployment may override.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slipway.api import conditions as cond
from slipway.api.durations import parse_duration
from slipway.api.models import ModelDeployment, ModelRelease, RolloutPolicy
from slipway.api.phases import Phase, Strategy


@dataclass(frozen=True)
class PolicyOutcome:
    """A policy's objection: the phase it puts the release in, and why."""

    phase: Phase
    reason: str
    message: str
    until: datetime | None = None
    """When the objection lapses by itself (a freeze window's end), if it does."""


def provided(release: ModelRelease, field: str) -> bool:
    """Whether the release carries one provenance field (``digest`` is on the model)."""
    if field == "digest":
        return bool(release.spec.model.digest)
    provenance = release.spec.provenance
    if provenance is None:
        return False
    value = provenance.model_dump(by_alias=True).get(field)
    return bool(value)


def check_policy(
    policy: RolloutPolicy | None,
    model: ModelDeployment,
    release: ModelRelease,
    strategy: Strategy,
    first: bool,
    now: datetime,
) -> PolicyOutcome | None:
    """The policy's objection to starting this release now, if any."""
    if policy is None:
        return None
    tier, spec = policy.metadata.name, policy.spec
    missing = [field for field in spec.required_provenance if not provided(release, field)]
    if missing:
        return PolicyOutcome(
            Phase.FAILED,
            cond.POLICY_VIOLATION,
            f"tier {tier!r} requires provenance {', '.join(missing)}; this release lacks it"
            " (spec.provenance / spec.model.digest)",
        )
    if not first and strategy not in spec.allowed_strategies:
        allowed = ", ".join(s.value for s in spec.allowed_strategies)
        return PolicyOutcome(
            Phase.FAILED,
            cond.POLICY_VIOLATION,
            f"strategy {strategy.value!r} is not allowed for tier {tier!r} (allowed: {allowed})",
        )
    if spec.approval is not None and spec.approval.required:
        return PolicyOutcome(
            Phase.PENDING,
            cond.APPROVAL_REQUIRED,
            f"tier {tier!r} requires a manual approval, which this version of Slipway cannot"
            " record yet; the release waits rather than skip the gate",
        )
    if spec.require_shadow and not first and strategy is Strategy.DIRECT:
        return PolicyOutcome(
            Phase.FAILED,
            cond.SHADOW_REQUIRED,
            f"tier {tier!r} requires a shadow phase, which strategy 'direct' does not have"
            " (use shadow, canary or blueGreen: they start with one)",
        )
    for window in spec.freeze_windows:
        if window.start <= now < window.end:
            why = f": {window.reason}" if window.reason else ""
            return PolicyOutcome(
                Phase.PENDING,
                cond.FREEZE_WINDOW,
                f"tier {tier!r} is in a change freeze until {window.end.isoformat()}{why}",
                window.end,
            )
    if spec.min_release_interval and model.status.history:
        earliest = model.status.history[0].promoted_at + parse_duration(spec.min_release_interval)
        if now < earliest:
            return PolicyOutcome(
                Phase.PENDING,
                cond.RELEASE_INTERVAL,
                f"tier {tier!r} allows one release per {spec.min_release_interval};"
                f" the next may start at {earliest.isoformat()}",
                earliest,
            )
    return None
