"""Fast rollback of a ModelDeployment to an earlier release, without analysis.

The target was already proven live, so there is nothing to analyse: its
Deployment (kept at zero after it was replaced, or rebuilt from the history
record) is scaled to full size; once available, every live request moves to
it (the route, or the Service), and once the data plane has taken that it
becomes the stable again, recorded in the history, and only then does the old
stable go to zero. Until then both run at full size and the ModelDeployment
says why. A release in flight is rolled back first.

The request is the annotation ``slipway.dev/rollback-to: <release>@<id>`` on
the ModelDeployment (``slipway rollback`` writes it); ``<id>`` makes each
request distinct, so one left in Git is carried out once, not on every
later promotion. An empty release name means the previous stable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from slipway.api import constants as c
from slipway.api.models import (
    ModelDeployment,
    ModelRef,
    ModelRelease,
    ModelReleaseSpec,
    ObjectMeta,
    ReleaseRecord,
)
from slipway.kube.children import build_deployment
from slipway.kube.observe import DeploymentState, LiveRoute
from slipway.rollout.core import Action, ApplyObject, RecordStable, ScaleDeployment, Situation
from slipway.traffic import ROUTERS


@dataclass(frozen=True)
class RollbackRequest:
    """One parsed rollback-to annotation."""

    raw: str
    target: str | None
    """Release to roll back to; None means the previous stable."""


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback needs this tick, and what to say about it."""

    actions: list[Action] = field(default_factory=list)
    message: str = ""
    done: bool = False
    refused: bool = False
    waiting_for_route: bool = False
    """The target is up; every request moves to it once the data plane takes the change."""


def pending_request(model: ModelDeployment) -> RollbackRequest | None:
    """The rollback asked for on the ModelDeployment and not yet carried out."""
    raw = (model.metadata.annotations or {}).get(c.ANNOTATION_ROLLBACK_TO, "").strip()
    if not raw or raw == model.status.handled_rollback:
        return None
    target = raw.split("@", 1)[0].strip() or None
    return RollbackRequest(raw=raw, target=target)


def request_accepted(model: ModelDeployment, request: RollbackRequest) -> bool:
    """Whether the request names a release it can roll back to (so in-flight work gives way)."""
    history = model.status.history
    target = request.target or (history[1].release if len(history) > 1 else None)
    known = {record.release for record in history}
    return target is not None and target in known and target != model.status.stable_release


def plan_rollback(
    model: ModelDeployment,
    request: RollbackRequest,
    deployments: Mapping[str, DeploymentState],
    now: datetime,
    route: LiveRoute | None = None,
    services: Mapping[str, str] | None = None,
) -> RollbackPlan:
    """The next move of a rollback (level-based: call it every tick until done); ``route``
    and ``services``: the model's route object and Services as they are live."""
    status, total = model.status, model.spec.replicas
    history = {record.release: record for record in status.history}
    target = request.target
    if target is None:
        if len(status.history) < 2:
            return RollbackPlan(
                message="rollback refused: no earlier release in the history", refused=True
            )
        target = status.history[1].release
    record = history.get(target)
    if record is None:
        known = ", ".join(history) or "none"
        return RollbackPlan(
            message=f"rollback refused: {target!r} is not in the history (known: {known})",
            refused=True,
        )
    if target == status.stable_release:
        return RollbackPlan(message=f"{target!r} is already the stable release", done=True)
    if status.active_release:
        return RollbackPlan(
            message=f"rollback to {target!r}: waiting for {status.active_release!r} to stop"
        )

    own = deployments.get(target)
    if own is None:
        body = build_deployment(model, release_from_record(model, record), total)
        return RollbackPlan(
            [ApplyObject(body)], f"rollback to {target!r}: recreating its Deployment"
        )
    if own.replicas != total:
        return RollbackPlan(
            [ScaleDeployment(own.name, total)], f"rollback to {target!r}: scaling up"
        )
    if not own.available:
        return RollbackPlan(
            message=f"rollback to {target!r}: {own.available_replicas}/{total} pods available"
        )

    # Every live request to the target first, and only once its data plane took that is
    # the target recorded as the stable and the old one scaled down: until then the route
    # it replaces may still send the old one everything, so both stay at full size.
    stand_in = Situation(
        release=release_from_record(model, record),
        model=model,
        siblings=(),
        deployments=deployments,
        now=now,
        route=route,
        services=services or {},
    )
    moved = ROUTERS[model.spec.router].restore(stand_in, model, target)
    if not moved.reached:
        kept = f"{status.stable_release!r} and {target!r} both stay at full size until it does"
        return RollbackPlan(
            moved.actions,
            f"rollback to {target!r}: every request moves to it once its data plane takes the"
            f" change ({moved.note or 'not live yet'}); {kept}",
            waiting_for_route=True,
        )
    previous = deployments.get(status.stable_release) if status.stable_release else None
    entry = record.model_copy(
        update={"promoted_at": now, "note": f"rollback from {status.stable_release}"}
    )
    actions: list[Action] = [
        RecordStable(entry, model.spec.history_limit, handled_rollback=request.raw)
    ]
    if previous is not None and previous.replicas != 0:
        actions.append(ScaleDeployment(previous.name, 0))
    return RollbackPlan(actions, f"rolled back to {target!r}", done=True)


def release_from_record(model: ModelDeployment, record: ReleaseRecord) -> ModelRelease:
    """A stand-in release rebuilt from history, to build its Deployment again."""
    return ModelRelease(
        metadata=ObjectMeta(name=record.release, namespace=model.metadata.namespace),
        spec=ModelReleaseSpec(
            deployment=model.metadata.name,
            model=ModelRef(uri=record.uri, version=record.version, digest=record.digest),
            image=record.image,
        ),
    )
