"""Decisions about a ModelDeployment itself: its status and which children to prune.

A release's Deployment outlives the release object when it is the stable (a
pruned or deleted stable release never takes serving down), and is removed
when its release was deleted in flight, rolled back, failed, or replaced.
The previous stable is kept at zero for a rollback; one left with pods (a
crash between a promotion's record and its scale-down) is scaled to zero at
once, in flight or not: its pods would take a share of the model's Service
through the next rollout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from slipway.api import conditions as cond
from slipway.api.models import ModelDeployment, ModelDeploymentStatus
from slipway.api.phases import Phase
from slipway.kube.observe import DeploymentState, LiveRoute, ReleaseSummary
from slipway.rollout.conditions import set_condition
from slipway.rollout.core import Action, ScaleDeployment
from slipway.rollout.rollback import pending_request, plan_rollback


@dataclass(frozen=True)
class ModelDecision:
    """The ModelDeployment's new status and the Deployments to delete."""

    status: ModelDeploymentStatus
    prune: list[tuple[str, str]] = field(default_factory=list)
    """(Deployment name, reason) pairs."""
    actions: list[Action] = field(default_factory=list)
    """Rollback moves (apply, scale, record the stable); else strays to zero and, at
    rest, the stable back at full size."""
    rollback_message: str | None = None


def decide_model(
    model: ModelDeployment,
    deployments: Mapping[str, DeploymentState],
    releases: Mapping[str, ReleaseSummary],
    now: datetime,
    routed: frozenset[str] = frozenset(),
    route: LiveRoute | None = None,
    services: Mapping[str, str] | None = None,
) -> ModelDecision:
    """Status of a ModelDeployment and the orphans to prune, from observed state;
    ``routed``: releases the live route may still send requests to (never pruned, nor
    scaled down); ``route`` and ``services``: the route object and Services as live."""
    status = model.status.model_copy(deep=True)
    status.observed_generation = model.metadata.generation
    generation = model.metadata.generation
    stable_name = status.stable_release
    stable = deployments.get(stable_name) if stable_name else None
    if stable_name is None:
        status.ready = None
        status.conditions = set_condition(
            status.conditions,
            cond.STABLE_SERVING,
            "False",
            cond.NO_STABLE,
            "no release has been promoted yet",
            now,
            generation,
        )
    else:
        ready = stable.ready_replicas if stable else 0
        desired = model.spec.replicas
        status.ready = f"{ready}/{desired}"
        serving = stable is not None and ready > 0
        status.conditions = set_condition(
            status.conditions,
            cond.STABLE_SERVING,
            "True" if serving else "False",
            cond.STABLE_READY if serving else cond.STABLE_NOT_READY,
            f"stable release {stable_name!r} has {ready}/{desired} ready pods",
            now,
            generation,
        )
    active = releases.get(status.active_release) if status.active_release else None
    if status.active_release and (active is None or Phase(active.phase).is_terminal):
        status.active_release = None  # deleted or finished in flight: free the slot
    if status.serving and status.active_release is None:
        others = [
            r
            for r, d in deployments.items()
            if r != status.serving and (d.replicas > 0 or d.ready_replicas > 0)
        ]  # a drained release's pods must be gone before the Service selects the model again
        if not others:
            status.serving = None  # one release has pods: the Service need not pick
    request = pending_request(model)
    if request is None:
        return ModelDecision(
            status,
            prune_orphans(status, deployments, releases, routed),
            [
                *strays(status, deployments, releases, routed),
                *at_rest(model, status, deployments, releases),
            ],
        )
    status.serving = None  # a rollback moves traffic by ready pods, as a canary does
    plan = plan_rollback(
        model.model_copy(update={"status": status}), request, deployments, now, route, services
    )
    if plan.refused or (plan.done and not plan.actions):
        status.handled_rollback = request.raw
    # While a rollback runs nothing is pruned: its target may be an old release.
    return ModelDecision(status, [], plan.actions, plan.message)


def at_rest(
    model: ModelDeployment,
    status: ModelDeploymentStatus,
    deployments: Mapping[str, DeploymentState],
    releases: Mapping[str, ReleaseSummary],
) -> list[Action]:
    """With no release in flight: the stable at full size.

    This is what makes every way out of a rollout safe, even one cut short by a
    crash or a deletion: whatever a release left shrunk is put back (what it left
    scaled up goes to zero in ``strays``, in flight or not).
    """
    in_flight = [
        name
        for name, summary in releases.items()
        if not Phase(summary.phase).is_terminal
        and not summary.deleting
        and name in deployments
        and name != status.stable_release
    ]
    if in_flight or status.active_release or status.stable_release is None:
        return []
    actions: list[Action] = []
    stable = deployments.get(status.stable_release)
    if stable is not None and stable.replicas != model.spec.replicas:
        actions.append(ScaleDeployment(stable.name, model.spec.replicas))
    return actions


def strays(
    status: ModelDeploymentStatus,
    deployments: Mapping[str, DeploymentState],
    releases: Mapping[str, ReleaseSummary],
    routed: frozenset[str] = frozenset(),
) -> list[Action]:
    """Scale to zero every Deployment that has pods and no business serving, in flight or not.

    Kept: the stable; a release in flight (the candidate); what live traffic may still
    reach (``routed``: the live route names it; ``status.serving``: the Service is
    pinned to it); and a Succeeded release this view of the model does not show replaced
    (a fresh promotion an older view has not seen). Anything else with pods (the
    previous stable a cut-short promotion left up, a release deleted or finished with
    its pods) would hold a share of the model's ready pods beside the candidate. The
    caller skips this while a rollback runs: its target may be any earlier release.
    """
    keep = {status.stable_release, status.serving, *routed}
    in_history = {record.release for record in status.history}
    actions: list[Action] = []
    for release_name, deployment in sorted(deployments.items()):
        if deployment.replicas == 0 or release_name in keep:
            continue
        summary = releases.get(release_name)
        if summary is not None and not summary.deleting:
            phase = Phase(summary.phase)
            if not phase.is_terminal:
                continue  # the candidate
            fresh = release_name not in in_history and not replaced_since(summary, status)
            if phase == Phase.SUCCEEDED and fresh:
                continue
        actions.append(ScaleDeployment(deployment.name, 0))
    return actions


def replaced_since(summary: ReleaseSummary, status: ModelDeploymentStatus) -> bool:
    """A release that completed before the current stable was promoted (off the history)."""
    head = status.history[0].promoted_at if status.history else None
    return summary.completed is not None and head is not None and summary.completed <= head


def prune_orphans(
    status: ModelDeploymentStatus,
    deployments: Mapping[str, DeploymentState],
    releases: Mapping[str, ReleaseSummary],
    routed: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """Deployments that serve no purpose any more; the stable's is never one of them, nor
    one the live route may still send requests to."""
    in_history = {record.release for record in status.history}
    previous = status.history[1].release if len(status.history) > 1 else None
    prune: list[tuple[str, str]] = []
    for release_name, deployment in sorted(deployments.items()):
        if release_name in (status.stable_release, previous) or release_name in routed:
            continue  # the stable serves; the previous stable waits at zero for a rollback
        summary = releases.get(release_name)
        if summary is None or summary.deleting:
            prune.append((deployment.name, f"release {release_name!r} was deleted"))
        elif summary.phase in (Phase.ROLLED_BACK, Phase.FAILED, Phase.EVALUATED):
            prune.append((deployment.name, f"release {release_name!r} is {summary.phase}"))
        elif summary.phase == Phase.SUCCEEDED and (
            release_name in in_history or replaced_since(summary, status)
        ):
            # Only once this view of the model shows it was replaced: a fresh promotion
            # that an older view has not seen yet is kept.
            prune.append((deployment.name, f"release {release_name!r} was replaced"))
    return prune
